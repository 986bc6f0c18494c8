"""Benchmark: the inventory sync of a lab host holding 200 containers.

Target (from the issue): sync of a lab host holding 200 containers: wall time, and the number
of LXD requests it made.

    python3 lab/lab.py up                      # the lab must be up (as root)
    .venv/bin/python bench/sync.py [--containers 200] [--running 20] [--syncs 5]

Creates the containers `bench-sync-001`... on lab host1 (`lxc init counter`, not started, to keep
a small machine responsive), registers host1 in a throwaway database twice, over its unix
socket and over HTTPS (enrolled with the panel's own lxd.trust and the lab's trust password),
and runs panel.hosts.inventory.sync (the plain function behind the Celery task) several times
at 20 containers, at the full count, and with some of them running. Every LXD HTTP request is
counted by wrapping requests.Session.send in this process only. The benchmark deletes its
containers and removes its client certificate from host1's trust store at the end, even
after a failure. Prints figures; asserts nothing about them.

Beside it: sync_lab.py (host1 and this run's containers), sync_runs.py (one timed sync,
enrolment over HTTPS) and sync_report.py (the tables' rows).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common
from sync_lab import LAB_HOST, PREFIX, bench_containers, delete_containers, lab_host, lxc
from sync_report import growth, query_kinds, summary_rows
from sync_runs import Phase, client_certificate, enroll_over_https, run_syncs

SMALL = 20
CREATION_BUDGET_SECONDS = 300


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

    print(f"# bench/sync.py: panel.hosts.inventory.sync of lab {LAB_HOST} (LXD {server_version}), "
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
