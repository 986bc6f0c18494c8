from django.contrib import admin

from panel.models import Host, Instance, Snapshot


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
