from django.contrib import admin
from django.urls import include, path

from panel.views import (
    audit,
    bundles,
    dashboard,
    hosts,
    instances,
    migrations,
    operations,
    schedules,
)

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("hosts/", hosts.host_list, name="host-list"),
    path("hosts/add/", hosts.host_add, name="host-add"),
    path("hosts/add-local/", dashboard.add_local_host, name="add-local-host"),
    path("hosts/<int:pk>/", hosts.host_detail, name="host-detail"),
    path("hosts/<int:pk>/sync/", hosts.host_sync, name="host-sync"),
    path("hosts/<int:pk>/remove/", hosts.host_remove, name="host-remove"),
    path("hosts/<int:pk>/enroll/", hosts.host_enroll, name="host-enroll"),
    path("hosts/<int:pk>/enroll/confirm/", hosts.host_enroll_confirm, name="host-enroll-confirm"),
    path("hosts/<int:pk>/enroll/retry/", hosts.host_enroll_retry, name="host-enroll-retry"),
    path("containers/", instances.instance_list, name="instance-list"),
    path("containers/<int:pk>/", instances.instance_detail, name="instance-detail"),
    path(
        "containers/<int:pk>/logs/fetch/", instances.instance_fetch_logs, name="instance-logs-fetch"
    ),
    path("containers/<int:pk>/logs/<int:log_pk>/", instances.instance_log, name="instance-log"),
    path(
        "containers/<int:pk>/operations/",
        operations.instance_operation,
        name="instance-operation",
    ),
    path("containers/<int:pk>/schedule/", schedules.schedule_save, name="schedule-save"),
    path("containers/<int:pk>/schedule/delete/", schedules.schedule_delete, name="schedule-delete"),
    path("containers/<int:pk>/migrate/check/", migrations.migration_check, name="migration-check"),
    path("containers/<int:pk>/migrate/", migrations.migration_start, name="migration-start"),
    path(
        "operations/<int:pk>/remove-left-copy/",
        migrations.remove_left_copy,
        name="remove-left-copy",
    ),
    path("operations/", operations.operation_list, name="operation-list"),
    path("operations/<int:pk>/", operations.operation_detail, name="operation-detail"),
    path("operations/<int:pk>/progress/", operations.operation_progress, name="operation-progress"),
    path("operations/<int:pk>/cancel/", operations.operation_cancel, name="operation-cancel"),
    # Bug bundles (panel/views/bundles.py) go here.
    path("bundles/", bundles.bundle_list, name="bundle-list"),
    path("bundles/<int:pk>/", bundles.bundle_detail, name="bundle-detail"),
    path("bundles/<int:pk>/status/", bundles.bundle_status, name="bundle-status"),
    path("bundles/<int:pk>/download/", bundles.bundle_download, name="bundle-download"),
    path("containers/<int:pk>/bundle/", bundles.instance_bundle, name="instance-bundle"),
    path("operations/<int:pk>/bundle/", bundles.operation_bundle, name="operation-bundle"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
    path("healthz", dashboard.liveness, name="health"),
    path("health/", dashboard.health_report, name="health-report"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
