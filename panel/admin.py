from django.contrib import admin

from panel.models import ApiToken, Host, Instance, Snapshot


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "status", "server_version", "last_contact"]
    list_filter = ["status"]
    search_fields = ["name", "endpoint"]
    readonly_fields = [
        "server_certificate",
        "offered_certificate",
        "facts",
        "last_contact",
        "last_error",
    ]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "host", "status", "type", "synced_at", "gone_at"]
    list_filter = ["status", "host"]
    search_fields = ["name"]
    list_select_related = ["host"]


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
