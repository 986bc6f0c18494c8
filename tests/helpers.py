"""Plain helpers that make rows for tests (no factory framework until it hurts)."""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
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


def child_database_url() -> str:
    """PANEL_DATABASE_URL of the test database, for the processes a test starts (gunicorn,
    Celery, manage.py), on SQLite and PostgreSQL alike. Refuses any other database: a test
    process must never write to the one the settings name for real use."""
    database = settings.DATABASES["default"]
    name = str(database["NAME"])
    if database["ENGINE"].endswith("sqlite3"):
        expected = str(database.get("TEST", {}).get("NAME") or "")
        if name != expected:
            raise RuntimeError(f"{name} is not the test database ({expected}): is the db set up?")
        return f"sqlite:///{name}"
    if not name.startswith("test_"):
        raise RuntimeError(f"{name} is not a test database: is the db set up?")
    user, password = quote(database["USER"], safe=""), quote(database["PASSWORD"], safe="")
    host, port = database["HOST"] or "localhost", database["PORT"] or 5432
    return f"postgres://{user}:{password}@{host}:{port}/{quote(name, safe='')}"
