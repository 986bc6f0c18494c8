"""The inventory: ask a host about itself and its instances, and write what its LXD reported
into Instance and Snapshot rows, in bulk; fetch an instance's log files.

A sync of a host with hundreds of containers must cost a constant number of queries per
table, not one per container: read everything once, diff in memory, bulk write.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from panel import lxd
from panel.hosts.connection import target_for
from panel.hosts.models import Host, Instance, InstanceLog, Snapshot
from panel.hosts.screening import screen_inventory
from panel.redaction import policy

logger = logging.getLogger(__name__)

LOG_FILE_MAX_BYTES = 2 * 1024 * 1024

INSTANCE_FIELDS = [
    "type",
    "status",
    "architecture",
    "description",
    "ephemeral",
    "stateful",
    "created_at",
    "last_used_at",
    "profiles",
    "expanded_config",
    "expanded_devices",
    "state",
    "ipv4",
]


def sync(host: Host) -> None:
    """Ask the host about itself and its instances, or record why it did not answer."""
    asked_at = timezone.now()
    try:
        facts, instances = lxd.host_inventory(target_for(host))
    except lxd.LXDError as error:
        logger.warning("host %s unreachable: %s", host.name, error)
        host.record_failure(str(error))
        return
    host.record_contact(facts)
    if facts.get("auth") == "trusted":
        record_inventory(host, instances, asked_at)
    else:
        host.record_failure("The host answers but does not trust the panel: add it again.")


@transaction.atomic
def record_inventory(host: Host, reported: list[dict], asked_at=None) -> None:
    """Write what LXD reported at `asked_at` (the time the panel asked). A row an operation
    wrote from a later read (`record_instance`) is fresher and is left as it is: a sync that
    was already under way when an operation ended must not undo what the operation verified."""
    now = timezone.now()
    reported, notes = screen_inventory(reported)
    asked_at = asked_at or now
    fresher = lock_fresher_rows(host, asked_at)
    reported = [data for data in reported if data["name"] not in fresher]
    # One INSERT ... ON CONFLICT DO UPDATE for all rows: bulk_update built a CASE per row and
    # field and held SQLite's write lock about 300 ms at 200 containers (3 s at 2,000).
    Instance.objects.bulk_create(
        [
            Instance(
                host=host,
                name=data["name"],
                synced_at=asked_at,
                gone_at=None,
                **{field: data[field] for field in INSTANCE_FIELDS},
            )
            for data in reported
        ],
        update_conflicts=True,
        unique_fields=["host", "name"],
        update_fields=[*INSTANCE_FIELDS, "synced_at", "gone_at"],
    )
    reported_names = {data["name"] for data in reported} | fresher
    host.instances.present().exclude(name__in=reported_names).order_by().update(gone_at=now)
    _record_snapshots(host, reported, fresher)
    Host.objects.filter(pk=host.pk).update(last_sync=now, inventory_notes=notes)
    host.last_sync, host.inventory_notes = now, notes


def sync_instance(host: Host, name: str) -> Instance | None:
    """Read one instance again (after an event about it): its row and snapshots as LXD has
    them now, or marked gone when LXD no longer has it."""
    data = lxd.instance_inventory(target_for(host), name)
    if data is None:
        mark_gone(host, name)
        return None
    screened, _ = screen_inventory([data])  # as the full sync stores it (NUL, lengths)
    if not screened:
        return None  # a name LXD's rules forbid: the full sync notes it on the host's page
    data = screened[0]
    now = timezone.now()
    with transaction.atomic():
        instance, _ = Instance.objects.update_or_create(
            host=host,
            name=name,
            defaults={
                "synced_at": now,
                "gone_at": None,
                **{field: data[field] for field in INSTANCE_FIELDS},
            },
        )
        instance.snapshots.all().delete()
        Snapshot.objects.bulk_create(
            Snapshot(instance=instance, **snapshot) for snapshot in data["snapshots"]
        )
    return instance


def mark_gone(host: Host, name: str) -> None:
    """The instance was deleted (or moved away) outside the panel: keep its history."""
    host.instances.present().filter(name=name).update(gone_at=timezone.now())


def lock_fresher_rows(host: Host, asked_at) -> set[str]:
    """The host's rows written from a read later than `asked_at`. The host's row is locked
    first, as `record_instance` does, so the two never interleave (PostgreSQL; SQLite's
    IMMEDIATE transactions are serial anyway)."""
    list(Host.objects.select_for_update().filter(pk=host.pk))
    return set(host.instances.filter(synced_at__gt=asked_at).values_list("name", flat=True))


def _record_snapshots(host: Host, reported: list[dict], fresher: set[str]) -> None:
    ids = dict(
        host.instances.filter(name__in=[d["name"] for d in reported]).values_list("name", "pk")
    )
    Snapshot.objects.filter(instance__host=host).exclude(instance__name__in=fresher).delete()
    Snapshot.objects.bulk_create(
        Snapshot(instance_id=ids[data["name"]], **snapshot)
        for data in reported
        for snapshot in data["snapshots"]
    )


def fetch_logs(instance: Instance, target: lxd.Target | None = None) -> None:
    """Store the instance's LXD log files, redacted before they are written: the logs are
    only ever read as the policy lets them out (pages, operations' CRIU lines), and a
    database dump or backup then holds no container secret either (docs/security.md). A
    running operation passes its own guarded target, so a worker that lost its operation
    makes no request."""
    redactor = policy(instance.expanded_config)
    try:
        target = target or target_for(instance.host)
        logs = lxd.instance_logs(target, instance.name, LOG_FILE_MAX_BYTES)
    except lxd.LXDError as error:
        InstanceLog.objects.update_or_create(
            instance=instance,
            filename="(fetch failed)",
            defaults={"content": redactor.text(str(error)), "fetched_at": timezone.now()},
        )
        return
    texts = [redactor.text(text) for _, text, _ in logs]
    instance.logs.all().delete()
    InstanceLog.objects.bulk_create(
        # A second look: a secret learnt from a later file (lxc.conf) may sit in an earlier one.
        InstanceLog(instance=instance, filename=name, content=redactor.known_values(text),
                    truncated=truncated)
        for (name, _, truncated), text in zip(logs, texts, strict=True)
    )  # fmt: skip


def record_instance(host_id: int, name: str, summary: dict | None, read_at) -> Instance | None:
    """One container's row as an operation just verified it (`lxd.instance_summary`, read at
    `read_at`), or marked gone when LXD said it is not there (summary None). Called inside the
    transaction that ends the operation, so a follow-up request sees the truth at once; the
    full-host sync that follows keeps everything else up to date."""
    with transaction.atomic():
        return _record_instance(host_id, name, summary, read_at)


def _record_instance(host_id: int, name: str, summary: dict | None, read_at) -> Instance | None:
    list(Host.objects.select_for_update().filter(pk=host_id))
    if summary is None:
        Instance.objects.filter(host_id=host_id, name=name, gone_at__isnull=True).update(
            gone_at=read_at, synced_at=read_at
        )
        return None
    screened, _ = screen_inventory([summary])  # the sync notes what it changed; here, the row
    if not screened:
        return None
    summary = screened[0]
    # Read without live state (instance_summary), so no addresses: a running container keeps
    # the ones last synced, a stopped one has none.
    fields = {field: summary[field] for field in INSTANCE_FIELDS if field not in ("state", "ipv4")}
    if summary["status"] != "Running":
        fields["ipv4"] = ""
    instance, _ = Instance.objects.update_or_create(
        host_id=host_id, name=name, defaults={**fields, "synced_at": read_at, "gone_at": None}
    )
    instance.snapshots.all().delete()
    Snapshot.objects.bulk_create(
        Snapshot(instance=instance, **snap) for snap in summary["snapshots"]
    )
    return instance
