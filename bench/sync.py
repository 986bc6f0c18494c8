"""Benchmark: the inventory sync of a lab host holding 200 containers.

Target (from the issue): sync of a lab host holding 200 containers: wall time, and the number
of LXD requests it made.

    python3 lab/lab.py up                      # the lab must be up (as root)
    .venv/bin/python bench/sync.py [--containers 200] [--running 20] [--syncs 5]

Creates the containers `bench-sync-001`... on lab host1 (`lxc init counter`, not started, to keep
a small machine responsive), registers host1 in a throwaway database twice, over its unix
socket and over HTTPS (enrolled with the panel's own lxd.trust and the lab's trust password),
and runs workers.hosts.sync (the plain function behind the Celery task) several times at 20
containers, at the full count, and with some of them running. Every LXD HTTP request is
counted by wrapping requests.Session.send in this process only. The benchmark deletes its
containers and removes its client certificate from host1's trust store at the end, even
after a failure. Prints figures; asserts nothing about them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import _common

LAB_HOST = "host1"
# Only names of this exact shape are ever deleted: other people's containers on the lab
# (even ones called bench-something) are left alone.
PREFIX = "bench-sync-"
OURS = re.compile(r"bench-sync-\d{3}")
SMALL = 20
CREATION_BUDGET_SECONDS = 300


def lab_host(name: str) -> dict:
    status = subprocess.run(
        ["python3", str(_common.ROOT / "lab" / "lab.py"), "status", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lab = json.loads(status.stdout)
    host = next((host for host in lab["hosts"] if host["name"] == name), None)
    if host is None or not host.get("lxd_answering"):
        raise SystemExit(f"The lab's {name} is not answering: run `python3 lab/lab.py up` first.")
    return {**host, "image_alias": lab["image_alias"]}


def lxc(host: dict, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["lxc", *args],
        env={**os.environ, "LXD_DIR": host["lxd_dir"]},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"lxc {' '.join(args[:3])}... on {host['name']}: {result.stderr.strip()}"
        )
    return result.stdout


def bench_containers(host: dict) -> list[str]:
    """This benchmark's containers on the host (by their exact name shape)."""
    names = lxc(host, "list", "--format", "csv", "--columns", "n").split()
    return sorted(name for name in names if OURS.fullmatch(name))


def delete_containers(host: dict, names: list[str]) -> float:
    started = time.perf_counter()
    for chunk in range(0, len(names), 50):
        lxc(host, "delete", "--force", *names[chunk : chunk + 50])
    return time.perf_counter() - started


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
    """Times record_inventory (the database half of a sync) by wrapping the name that
    workers.hosts calls, in this process only."""

    def __enter__(self) -> InventoryTimer:
        import workers.hosts

        self.seconds = 0.0
        self._original = original = workers.hosts.record_inventory

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        workers.hosts.record_inventory = timed
        return self

    def __exit__(self, *exc_info) -> None:
        import workers.hosts

        workers.hosts.record_inventory = self._original


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

    from panel.models import Host, Instance
    from workers.hosts import sync

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
    from django.conf import settings

    from panel import lxd

    client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    return client_cert, lxd.certificate_fingerprint(Path(client_cert[0]).read_text())


def enroll_over_https(host: dict, client_cert: tuple[str, str]):
    """A Host row for host1's HTTPS address, trusted through the panel's own code path
    (the same calls as workers.hosts.fetch_certificate and establish_trust)."""
    from panel import lxd
    from panel.models import Host

    pem = lxd.fetch_server_certificate(host["url"])
    target = lxd.Target(host["url"], server_certificate=pem, client_cert=client_cert)
    lxd.trust(target, host["trust_password"])
    return Host.objects.create(
        name=f"{host['name']}-https", endpoint=host["url"], server_certificate=pem
    )


def summary_rows(phases: list[Phase]) -> list[tuple]:
    rows = []
    for phase in phases:
        timings = _common.milliseconds([run.seconds for run in phase.runs])
        lxd_ms = _common.milliseconds([sum(r.seconds for r in run.requests) for run in phase.runs])
        db_ms = _common.milliseconds([run.inventory_seconds for run in phase.runs])
        requests = sorted({len(run.requests) for run in phase.runs})
        queries = [len(run.queries) for run in phase.runs]
        received = max(sum(r.size for r in run.requests) for run in phase.runs) / 1024
        rows.append(
            (
                phase.label, phase.transport, len(phase.runs), f"{phase.rows} ({phase.bench_rows})",
                f"{timings['median']:.0f}", f"{timings['min']:.0f}", f"{timings['max']:.0f}",
                "/".join(map(str, requests)), f"{lxd_ms['median']:.0f}", f"{received:.0f}",
                f"{db_ms['median']:.0f}", f"{queries[0]}, then {max(queries[1:], default=0)}",
            )
        )  # fmt: skip
    return rows


def growth(phases: list[Phase]) -> list[str]:
    """One sentence per transport: what grows from the smallest to the largest stopped set."""
    sentences = []
    for transport in dict.fromkeys(phase.transport for phase in phases):
        stopped = [p for p in phases if p.transport == transport and p.running == 0]
        if len(stopped) < 2 or stopped[0].containers == stopped[-1].containers:
            continue
        small, large = stopped[0], stopped[-1]

        def figures(phase: Phase) -> tuple[int, int, float, float]:
            last = phase.runs[-1]
            inventory = _common.milliseconds([run.inventory_seconds for run in phase.runs])
            lxd_ms = _common.milliseconds(
                [sum(r.seconds for r in run.requests) for run in phase.runs]
            )
            return len(last.requests), len(last.queries), lxd_ms["median"], inventory["median"]

        (r1, q1, l1, i1), (r2, q2, l2, i2) = figures(small), figures(large)
        per_container = (i2 - i1) / (large.containers - small.containers)
        sentences.append(
            f"{transport}, {small.containers} -> {large.containers} containers: LXD requests "
            f"per sync {r1} -> {r2}; SQL queries per steady sync {q1} -> {q2}; time in LXD "
            f"{l1:.0f} -> {l2:.0f} ms; record_inventory {i1:.0f} -> {i2:.0f} ms "
            f"(+{per_container:.2f} ms per container)"
        )
    return sentences


def query_kinds(sql: list[str]) -> str:
    """'UPDATE panel_instance: 4, ...' for one sync's statements."""
    kinds = Counter()
    for statement in sql:
        words = statement.replace('"', "").split()
        verb = words[0].upper()
        table = ""
        for keyword in ("FROM", "INTO", "UPDATE"):
            if keyword in words[:-1] and (verb != "UPDATE" or keyword == "UPDATE"):
                table = words[words.index(keyword) + 1]
                break
        kinds[f"{verb} {table}".strip()] += 1
    return ", ".join(f"{kind}: {count}" for kind, count in kinds.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--running", type=int, default=20, help="how many to start")
    parser.add_argument("--syncs", type=int, default=5, help="syncs per configuration")
    parser.add_argument(
        "--delete-leftovers",
        action="store_true",
        help=f"first delete {PREFIX}* containers left on {LAB_HOST} by an interrupted run",
    )
    args = parser.parse_args()

    host = lab_host(LAB_HOST)
    leftovers = bench_containers(host)
    if leftovers and not args.delete_leftovers:
        raise SystemExit(
            f"{LAB_HOST} already holds {len(leftovers)} {PREFIX}* containers "
            f"({', '.join(leftovers[:5])}...). They would distort the figures: rerun with "
            "--delete-leftovers if an interrupted run of this benchmark left them."
        )
    if leftovers:
        delete_containers(host, leftovers)

    folder = _common.isolate("sync")
    trusted_fingerprint, server_version = "", "?"
    notes: list[str] = []
    phases: list[Phase] = []
    try:
        from panel import lxd
        from panel.models import Host

        socket_host = Host.objects.create(
            name=f"{LAB_HOST}-socket", endpoint=f"{host['lxd_dir']}/unix.socket"
        )
        client_cert, fingerprint = client_certificate()
        trusted_fingerprint = fingerprint  # removed at the end even if trust half-failed
        try:
            https_host = enroll_over_https(host, client_cert)
        except lxd.LXDError as error:
            https_host = None
            notes.append(f"HTTPS skipped: enrolling {host['url']} failed: {error}")
        transports = [("unix socket", socket_host)]
        if https_host is not None:
            transports.append(("HTTPS", https_host))

        names = [f"{PREFIX}{number:03d}" for number in range(1, args.containers + 1)]
        created: list[str] = []
        creation_started = time.perf_counter()

        def create_until(count: int) -> None:
            for name in names[len(created) : count]:
                if time.perf_counter() - creation_started > CREATION_BUDGET_SECONDS:
                    notes.append(
                        f"creation stopped after {CREATION_BUDGET_SECONDS}s at "
                        f"{len(created)} containers"
                    )
                    return
                lxc(host, "init", host["image_alias"], name)
                created.append(name)
                if len(created) % 20 == 0:
                    _common.progress(f"created {len(created)} containers")

        def measure(label: str, running: int) -> None:
            for transport, row in transports:
                phase = Phase(label, transport, len(created), running)
                phases.append(run_syncs(phase, row.pk, args.syncs))

        create_until(min(SMALL, args.containers))
        measure(f"{len(created)} stopped", 0)
        create_until(args.containers)
        creation_seconds = time.perf_counter() - creation_started
        notes.append(
            f"`lxc init {host['image_alias']}` x{len(created)} in a loop: "
            f"{creation_seconds:.1f} s ({creation_seconds / len(created) * 1000:.0f} ms each)"
        )
        if len(created) > SMALL:
            measure(f"{len(created)} stopped", 0)
        if args.running:
            to_start = created[: args.running]
            started = time.perf_counter()
            lxc(host, "start", *to_start)
            notes.append(
                f"`lxc start` of {len(to_start)} containers ({to_start[0]}..{to_start[-1]}): "
                f"{time.perf_counter() - started:.1f} s"
            )
            measure(f"{len(created)}, {len(to_start)} running", len(to_start))
        server_version = Host.objects.get(pk=socket_host.pk).server_version
    finally:
        try:
            mine = bench_containers(host)  # none existed at the start: all are this run's
            if mine:
                _common.progress(f"deleting {len(mine)} {PREFIX}* containers")
                notes.append(
                    f"`lxc delete --force` of {len(mine)} containers: "
                    f"{delete_containers(host, mine):.1f} s"
                )
        finally:
            try:
                trusted = lxc(host, "query", "/1.0/certificates")
                if trusted_fingerprint and trusted_fingerprint in trusted:
                    lxc(host, "config", "trust", "remove", trusted_fingerprint)
                    notes.append(
                        f"removed this run's client certificate {trusted_fingerprint[:12]} "
                        f"from {LAB_HOST}'s trust store"
                    )
            finally:
                _common.discard(folder)
    if bench_containers(host):
        notes.append(f"WARNING: {PREFIX}* containers are still on {LAB_HOST}: delete them.")

    print(f"# bench/sync.py: workers.hosts.sync of lab {LAB_HOST} (LXD {server_version}), "
          f"{args.syncs} syncs per row\n")  # fmt: skip
    _common.print_machine()
    print(
        "'rows' counts the Instance rows present after the syncs (in brackets: this run's "
        "ones; the rest belong to whoever else uses the lab). 'LXD ms' is the time spent "
        "inside the HTTP requests; 'record_inventory ms' the database half. The first sync "
        "of a row creates the Instance rows; the later ones update them.\n"
    )
    _common.print_table(
        ["containers", "transport", "syncs", "rows (this run's)", "median ms", "min ms", "max ms",
         "LXD requests/sync", "LXD ms", "LXD KB received", "record_inventory ms",
         "SQL queries: 1st sync, then"],
        summary_rows(phases),
    )  # fmt: skip
    if phases:
        last = phases[-1].runs[-1]
        print(f"## The LXD requests of one sync ({phases[-1].label}, {phases[-1].transport})\n")
        _common.print_table(
            ["method", "path", "ms", "KB"],
            [(r.method, r.path, f"{r.seconds * 1000:.1f}", f"{r.size / 1024:.1f}")
             for r in last.requests],
        )  # fmt: skip
        print("## SQL statements of a steady sync (the last of each row)\n")
        _common.print_table(
            ["containers", "transport", "queries", "by kind"],
            [(p.label, p.transport, len(p.runs[-1].queries), query_kinds(p.runs[-1].queries))
             for p in phases],
        )  # fmt: skip
    for sentence in growth(phases):
        print(f"- {sentence}")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    sys.exit(main())
