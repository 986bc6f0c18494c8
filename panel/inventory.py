"""Write what a host's LXD reported into Instance and Snapshot rows, in bulk.

A sync of a host with hundreds of containers must cost a constant number of queries per
table, not one per container: read everything once, diff in memory, bulk write.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from panel.models import Host, Instance, Snapshot

INSTANCE_FIELDS = [
    "type", "status", "architecture", "description", "ephemeral", "stateful", "created_at",
    "last_used_at", "profiles", "expanded_config", "expanded_devices", "state",
]  # fmt: skip


@transaction.atomic
def record_inventory(host: Host, reported: list[dict]) -> None:
    now = timezone.now()
    known = {instance.name: instance for instance in host.instances.all()}
    to_create, to_update = [], []
    for data in reported:
        instance = known.get(data["name"]) or Instance(host=host, name=data["name"])
        for field in INSTANCE_FIELDS:
            setattr(instance, field, data[field])
        instance.synced_at, instance.gone_at = now, None
        (to_update if instance.pk else to_create).append(instance)
    Instance.objects.bulk_create(to_create)
    Instance.objects.bulk_update(to_update, [*INSTANCE_FIELDS, "synced_at", "gone_at"])
    reported_names = {data["name"] for data in reported}
    host.instances.present().exclude(name__in=reported_names).update(gone_at=now)
    _record_snapshots(host, reported)
    host.last_sync = now
    host.save(update_fields=["last_sync"])


def _record_snapshots(host: Host, reported: list[dict]) -> None:
    ids = dict(
        host.instances.filter(name__in=[d["name"] for d in reported]).values_list("name", "pk")
    )
    Snapshot.objects.filter(instance__host=host).delete()
    Snapshot.objects.bulk_create(
        Snapshot(instance_id=ids[data["name"]], **snapshot)
        for data in reported
        for snapshot in data["snapshots"]
    )
