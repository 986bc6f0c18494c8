from django.contrib import admin
from django.urls import include, path, re_path

from panel import metrics
from panel.web.api import docs as api_docs
from panel.web.api import hosts as api_hosts
from panel.web.api import maintenance as api_maintenance
from panel.web.api import views as api
from panel.web.liveness import liveness
from panel.web.views import (
    audit,
    bundles,
    dashboard,
    failures,
    hosts,
    instances,
    maintenance,
    migration,
    notifications,
    operations,
    schedules,
    taskbar,
    tokens,
)

urlpatterns = [
    # First, the two answers every open page asks for again and again: Django tries the
    # patterns in order, and these two come before the eighty others (no pattern overlaps).
    path("operations/<int:pk>/progress/", operations.operation_progress, name="operation-progress"),
    path("taskbar/", taskbar.taskbar, name="taskbar"),
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
    path(
        "hosts/<int:pk>/maintenance/mode/",
        maintenance.host_maintenance_mode,
        name="host-maintenance-mode",
    ),
    path(
        "hosts/<int:pk>/maintenance/mode/clear/",
        maintenance.host_maintenance_clear,
        name="host-maintenance-clear",
    ),
    path(
        "hosts/<int:pk>/maintenance/plan/",
        maintenance.host_maintenance_plan,
        name="host-maintenance-plan",
    ),
    path("maintenance/<int:pk>/", maintenance.maintenance_plan, name="maintenance-plan"),
    path(
        "maintenance/<int:pk>/recheck/",
        maintenance.maintenance_recheck,
        name="maintenance-recheck",
    ),
    path(
        "maintenance/<int:pk>/confirm/",
        maintenance.maintenance_confirm,
        name="maintenance-confirm",
    ),
    path(
        "operations/<int:pk>/children/",
        maintenance.operation_children,
        name="operation-children",
    ),
    path("containers/", instances.instance_list, name="instance-list"),
    path("containers/<int:pk>/", instances.instance_detail, name="instance-detail"),
    path(
        "containers/<int:pk>/logs/fetch/", instances.instance_fetch_logs, name="instance-logs-fetch"
    ),
    path("containers/<int:pk>/logs/<int:log_pk>/", instances.instance_log, name="instance-log"),
    path(
        "containers/<int:pk>/config/reveal/",
        instances.instance_config_reveal,
        name="instance-config-reveal",
    ),
    path(
        "containers/<int:pk>/operations/",
        operations.instance_operation,
        name="instance-operation",
    ),
    path("containers/<int:pk>/schedule/", schedules.schedule_save, name="schedule-save"),
    path("containers/<int:pk>/schedule/delete/", schedules.schedule_delete, name="schedule-delete"),
    path("containers/<int:pk>/migrate/check/", migration.migration_check, name="migration-check"),
    path("containers/<int:pk>/migrate/", migration.migration_start, name="migration-start"),
    path(
        "operations/<int:pk>/remove-left-copy/",
        migration.remove_left_copy,
        name="remove-left-copy",
    ),
    path("operations/", operations.operation_list, name="operation-list"),
    path("operations/<int:pk>/", operations.operation_detail, name="operation-detail"),
    path("operations/<int:pk>/cancel/", operations.operation_cancel, name="operation-cancel"),
    path("bundles/", bundles.bundle_list, name="bundle-list"),
    path("bundles/<int:pk>/", bundles.bundle_detail, name="bundle-detail"),
    path("bundles/<int:pk>/status/", bundles.bundle_status, name="bundle-status"),
    path("bundles/<int:pk>/download/", bundles.bundle_download, name="bundle-download"),
    path("containers/<int:pk>/bundle/", bundles.instance_bundle, name="instance-bundle"),
    path("operations/<int:pk>/bundle/", bundles.operation_bundle, name="operation-bundle"),
    path("failures/", failures.failure_list, name="failure-list"),
    path("failures/<int:pk>/", failures.failure_detail, name="failure-detail"),
    path("failures/<int:pk>/status/", failures.failure_status, name="failure-status"),
    path("failures/<int:pk>/upstream/", failures.failure_upstream, name="failure-upstream"),
    path("failures/<int:pk>/note/", failures.failure_note, name="failure-note"),
    path("tokens/", tokens.token_list, name="token-list"),
    path("notifications/", notifications.notification_settings, name="notifications"),
    path(
        "notifications/secret/",
        notifications.notification_secret_renew,
        name="notification-secret",
    ),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token-revoke"),
    # JSON API (panel/web/api/)
    path("api/", api_docs.index, name="api-index"),
    path("api/schema/", api_docs.schema, name="api-schema"),
    path("api/docs/", api_docs.docs, name="api-docs"),
    path("api/hosts/", api_hosts.host_list, name="api-hosts"),
    path("api/hosts/enroll/", api_hosts.host_enroll, name="api-host-enroll"),
    path("api/hosts/<int:pk>/", api_hosts.host_detail, name="api-host-detail"),
    path(
        "api/hosts/<int:pk>/enroll/confirm/",
        api_hosts.host_enroll_confirm,
        name="api-host-enroll-confirm",
    ),
    path(
        "api/hosts/<int:pk>/enroll/retry/",
        api_hosts.host_enroll_retry,
        name="api-host-enroll-retry",
    ),
    path(
        "api/hosts/<int:pk>/maintenance/",
        api_maintenance.host_maintenance,
        name="api-host-maintenance",
    ),
    path(
        "api/hosts/<int:pk>/maintenance/plans/",
        api_maintenance.host_maintenance_plans,
        name="api-host-maintenance-plans",
    ),
    path(
        "api/maintenance/<int:pk>/", api_maintenance.maintenance_plan, name="api-maintenance-plan"
    ),
    path(
        "api/maintenance/<int:pk>/confirm/",
        api_maintenance.maintenance_confirm,
        name="api-maintenance-confirm",
    ),
    path("api/containers/", api.container_list, name="api-containers"),
    path("api/containers/<int:pk>/", api.container_detail, name="api-container-detail"),
    path(
        "api/containers/<int:pk>/operations/",
        api.container_operation,
        name="api-container-operation",
    ),
    path(
        "api/containers/<int:pk>/migrate/check/",
        api.container_migrate_check,
        name="api-container-migrate-check",
    ),
    path("api/containers/<int:pk>/migrate/", api.container_migrate, name="api-container-migrate"),
    path("api/containers/<int:pk>/bundle/", api.container_bundle, name="api-container-bundle"),
    path("api/operations/", api.operation_list, name="api-operations"),
    path("api/operations/<int:pk>/", api.operation_detail, name="api-operation-detail"),
    path("api/operations/<int:pk>/cancel/", api.operation_cancel, name="api-operation-cancel"),
    path("api/operations/<int:pk>/bundle/", api.operation_bundle, name="api-operation-bundle"),
    path("api/bundles/", api.bundle_list, name="api-bundles"),
    path("api/bundles/<int:pk>/", api.bundle_detail, name="api-bundle-detail"),
    path("api/bundles/<int:pk>/download/", api.bundle_download, name="api-bundle-download"),
    path("api/failures/", api.failure_list, name="api-failures"),
    path("api/failures/<int:pk>/", api.failure_detail, name="api-failure-detail"),
    path("api/failures/<int:pk>/status/", api.failure_status, name="api-failure-status"),
    path("api/failures/<int:pk>/upstream/", api.failure_upstream, name="api-failure-upstream"),
    path("api/failures/<int:pk>/note/", api.failure_note, name="api-failure-note"),
    re_path(r"^api/", api.not_found, name="api-not-found"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
    path("healthz", liveness, name="health"),  # answered by LivenessMiddleware first
    path("metrics", metrics.metrics, name="metrics"),
    path("health/", dashboard.health_report, name="health-report"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "panel.web.api.docs.bad_request"
handler500 = "panel.web.api.docs.server_error"
