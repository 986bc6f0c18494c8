"""Host slots: at most PANEL_HOST_MAX_OPERATIONS operations run at once on one host (a
migration takes a slot on both of its hosts; a pre-flight check takes none). An operation
that finds a host full stays pending, says why, and is looked at again a second later, first
come, first served. The claim (lifecycle.claim) asks here while it holds the hosts' locks."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from panel.hosts.models import Host
from panel.operations.models import Operation

WAITING_FOR_HOST = "waiting for host"
# Kinds that only read (pre-flights) or only launch other operations (a maintenance, whose
# children take the slots) never wait for a slot nor take one.
SLOTLESS_KINDS = (
    Operation.Kind.PREFLIGHT,
    Operation.Kind.MAINTENANCE_PLAN,
    Operation.Kind.MAINTENANCE,
)


def why_it_waits(operation: Operation) -> str:
    """Why the operation may not take its hosts' slots now, in words; '' when it may."""
    full = hosts_at_limit(operation)
    if full:
        waiting = ", ".join(f"{host.name} runs {count}" for host, count in full)
        return (
            f"Waiting for a free slot: {waiting} "
            f"(limit {settings.HOST_MAX_OPERATIONS} per host); it starts by itself."
        )
    ahead = older_waiter(operation)
    if ahead:
        return (
            f"Waiting for a free slot: operation #{ahead.pk}, asked earlier for the "
            "same host, goes first; this one starts by itself."
        )
    return ""


def slot_hosts(operation: Operation) -> list[Host]:
    """The hosts whose slots the operation takes. A pre-flight check only reads and a
    maintenance only launches its children, so neither waits for a slot nor takes one."""
    if operation.kind in SLOTLESS_KINDS:
        return []
    return [h for h in (operation.source_host, operation.target_host) if h is not None]


def older_waiter(operation: Operation) -> Operation | None:
    """An operation asked earlier that is waiting for a slot on one of the same hosts (and
    whose worker looked again lately): first come, first served."""
    hosts = [host.pk for host in slot_hosts(operation)]
    if not hosts:
        return None
    lately = timezone.now() - dt.timedelta(seconds=10 * settings.HOST_SLOT_RETRY_SECONDS + 5)
    return (
        Operation.objects.filter(
            status=Operation.Status.PENDING,
            stage=WAITING_FOR_HOST,
            heartbeat_at__gte=lately,
            queued_at__lt=operation.queued_at,
        )
        .filter(Q(source_host__in=hosts) | Q(target_host__in=hosts))
        .exclude(pk=operation.pk)
        .order_by("queued_at", "pk")
        .first()
    )


def hosts_at_limit(operation: Operation) -> list[tuple[Host, int]]:
    """The operation's hosts that already run as many operations as allowed, with counts."""
    hosts = slot_hosts(operation)
    if not hosts:
        return []
    list(Host.objects.select_for_update().filter(pk__in=[h.pk for h in hosts]).order_by("pk"))
    running = Operation.objects.filter(status=Operation.Status.RUNNING).exclude(
        kind__in=SLOTLESS_KINDS
    )
    counts = [
        (host, running.filter(Q(source_host=host) | Q(target_host=host)).count()) for host in hosts
    ]
    return [(host, count) for host, count in counts if count >= settings.HOST_MAX_OPERATIONS]
