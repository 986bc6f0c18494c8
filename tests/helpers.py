"""Plain helpers that make rows for tests (no factory framework until it hurts)."""

from __future__ import annotations

from django.utils import timezone

from panel.models import Host, Instance, Snapshot


def make_host(name: str = "h1", **fields) -> Host:
    fields.setdefault("endpoint", f"https://{name}.example:8443")
    fields.setdefault("status", Host.Status.ONLINE)
    fields.setdefault("facts", {"server": "lxd", "server_version": "5.0.2", "driver": "lxc"})
    return Host.objects.create(name=name, **fields)


def make_instance(host: Host, name: str = "c1", status: str = "Running", **fields) -> Instance:
    fields.setdefault("architecture", "x86_64")
    fields.setdefault("state", {"pid": 100, "processes": 3, "memory_usage": 4096})
    fields.setdefault("synced_at", timezone.now())
    return Instance.objects.create(host=host, name=name, status=status, **fields)


def make_snapshot(instance: Instance, name: str = "snap0", **fields) -> Snapshot:
    fields.setdefault("created_at", timezone.now())
    return Snapshot.objects.create(instance=instance, name=name, **fields)
