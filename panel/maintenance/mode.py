"""What a host's maintenance refuses: while the host is in maintenance mode, or while a
maintenance is under way there, no new operation or migration targets it (the forms, the
migration pre-flight and the snapshot schedules ask here). The maintenance's own children
are its work, not new operations: they are exempt."""

from __future__ import annotations

from django.utils import timezone

from panel.hosts.models import Host
from panel.maintenance.models import HostMaintenance
from panel.operations.models import Operation


def flag_of(host: Host) -> HostMaintenance | None:
    return HostMaintenance.objects.filter(host=host).select_related("host").first()


def closed_because(host: Host | None, for_operation: Operation | None = None) -> str:
    """Why no new operation may target `host` now, in words; '' when one may. A child of a
    maintenance of this very host (a bring back moving a container home) may."""
    if host is None:
        return ""
    parent = for_operation.parent if for_operation is not None else None
    if parent is not None and parent.source_host_id == host.pk:
        return ""
    flag = flag_of(host)
    if flag is not None:
        return f"{flag.describe()}. An administrator clears it on the host's page."
    active = Operation.objects.active().filter(kind=Operation.Kind.MAINTENANCE, source_host=host)
    under_way = active.first()
    if under_way is not None:
        since = timezone.localtime(under_way.started_at or under_way.queued_at)
        return (
            f"Maintenance operation #{under_way.pk} ({under_way.instance_name}) is under way "
            f"on {host.name} since {since:%H:%M}; wait for it to end, or cancel it."
        )
    return ""
