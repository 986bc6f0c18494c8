from django.contrib import admin

from panel.models import Host


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "status", "server_version", "last_contact"]
    list_filter = ["status"]
    search_fields = ["name", "endpoint"]
    readonly_fields = ["server_certificate", "facts", "last_contact", "last_error"]
