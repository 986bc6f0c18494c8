"""bench/sync.py: one timed sync (LXD's requests counted, SQL captured, the database half
timed) and host1 enrolled over HTTPS through the panel's own calls. Not run on its own."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import _common
from sync_lab import PREFIX


@dataclass
class LXDRequest:
    method: str
    path: str
    seconds: float
    size: int


class LXDRequests:
    """Records every HTTP request sent through requests (pylxd uses it for the unix socket
    and for HTTPS alike) while active, by wrapping requests.Session.send."""

    def __init__(self) -> None:
        self.sent: list[LXDRequest] = []

    def __enter__(self) -> LXDRequests:
        import requests

        self._original = original = requests.Session.send

        def counting_send(session, request, **kwargs):
            started = time.perf_counter()
            response = original(session, request, **kwargs)
            parts = urlsplit(request.url)
            path = f"{parts.path}?{parts.query}" if parts.query else parts.path
            size = 0 if kwargs.get("stream") else len(response.content)
            self.sent.append(LXDRequest(request.method, path, time.perf_counter() - started, size))
            return response

        requests.Session.send = counting_send
        return self

    def __exit__(self, *exc_info) -> None:
        import requests

        requests.Session.send = self._original


class InventoryTimer:
    """Times record_inventory (the database half of a sync) by wrapping the public name
    panel.hosts.inventory.record_inventory, which sync looks up there at every call, in this
    process only."""

    def __enter__(self) -> InventoryTimer:
        from panel.hosts import inventory

        self.seconds = 0.0
        self._original = original = inventory.record_inventory

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        inventory.record_inventory = timed
        return self

    def __exit__(self, *exc_info) -> None:
        from panel.hosts import inventory

        inventory.record_inventory = self._original


@dataclass
class SyncRun:
    seconds: float
    requests: list[LXDRequest]
    queries: list[str]
    inventory_seconds: float


@dataclass
class Phase:
    label: str
    transport: str
    containers: int
    running: int
    runs: list[SyncRun] = field(default_factory=list)
    rows: int = 0
    bench_rows: int = 0


def run_syncs(phase: Phase, host_pk: int, count: int) -> Phase:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from panel.hosts.inventory import sync
    from panel.models import Host, Instance

    for number in range(count):
        _common.progress(f"{phase.label}, {phase.transport}: sync {number + 1}/{count}")
        host = Host.objects.get(pk=host_pk)
        with (
            LXDRequests() as sent,
            CaptureQueriesContext(connection) as queries,
            InventoryTimer() as inventory,
        ):
            started = time.perf_counter()
            sync(host)
            seconds = time.perf_counter() - started
        host.refresh_from_db()
        if host.status != Host.Status.ONLINE or host.last_error:
            raise RuntimeError(f"sync of {host.name} failed: {host.last_error}")
        sql = [query["sql"] for query in queries.captured_queries]
        phase.runs.append(SyncRun(seconds, sent.sent, sql, inventory.seconds))
    present = Instance.objects.present().filter(host_id=host_pk)
    phase.rows = present.count()
    phase.bench_rows = present.filter(name__startswith=PREFIX).count()
    return phase


def client_certificate() -> tuple[tuple[str, str], str]:
    """The panel's client certificate in the throwaway data folder, and its fingerprint."""

    from panel.hosts.identity import client_cert_files, client_identity

    return client_cert_files(), client_identity().fingerprint


def enroll_over_https(host: dict, client_cert: tuple[str, str]):
    """A Host row for host1's HTTPS address, trusted through the panel's own code path
    (the same calls as panel.hosts.enrolment.fetch_certificate and establish_trust)."""
    from panel import lxd
    from panel.models import Host

    pem = lxd.fetch_server_certificate(host["url"])
    target = lxd.Target(host["url"], server_certificate=pem, client_cert=client_cert)
    lxd.trust(target, host["trust_password"])
    return Host.objects.create(
        name=f"{host['name']}-https", endpoint=host["url"], server_certificate=pem
    )
