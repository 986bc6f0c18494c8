from django.contrib import admin

from panel.models import ApiToken, Host, HostMaintenance, Instance, MaintenancePlan, Snapshot


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "status", "server_version", "last_contact"]
    list_filter = ["status"]
    search_fields = ["name", "endpoint"]
    # The endpoint too: it was checked when the host was added (panel/hosts/endpoints.py) and
    # its certificate pinned for it; another address means adding the host again.
    readonly_fields = [
        "endpoint",
        "server_certificate",
        "offered_certificate",
        "facts",
        "last_contact",
        "last_error",
    ]

    def has_add_permission(self, request) -> bool:
        return False  # hosts are added by enrolment (the Hosts page), which checks and pins


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    """The config and devices are left out: they hold the container's secrets, which the
    container page shows redacted, revealing one value at a time on the audit trail."""

    list_display = ["name", "host", "status", "type", "synced_at", "gone_at"]
    list_filter = ["status", "host"]
    search_fields = ["name"]
    list_select_related = ["host"]
    exclude = ["expanded_config", "expanded_devices"]


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["name", "instance", "created_at", "expires_at", "stateful"]
    list_select_related = ["instance__host"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every user's tokens; the token itself is never stored, so it cannot be shown here."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]


@admin.register(HostMaintenance)
class HostMaintenanceAdmin(admin.ModelAdmin):
    """Hosts in maintenance mode; set and cleared on the host's page (audited there)."""

    list_display = ["host", "set_by_name", "set_at", "reason"]
    list_select_related = ["host"]
    readonly_fields = ["host", "set_by", "set_by_name", "set_at"]


@admin.register(MaintenancePlan)
class MaintenancePlanAdmin(admin.ModelAdmin):
    """Host maintenance plans, as the worker drew them up: read-only (their page runs them)."""

    list_display = ["pk", "host", "mode", "policy", "created_at", "confirmed_at", "operation"]
    list_filter = ["mode", "host"]
    list_select_related = ["host", "operation"]
    readonly_fields = [field.name for field in MaintenancePlan._meta.fields]
