"""Migration through the panel (click to verified success) against `lxc move`, between the
same two lab hosts, in alternation: downtime and total time.

Run (lab up, as root):  .venv/bin/python bench/migration_vs_lxc.py [--pairs 5] [--big-runs 2]

Targets (from the issue):
- downtime ratio (panel checkpoint-move-restore / `lxc move`) at most 0.3;
- total time ratio (panel live / `lxc move`, the same strategy) at most 1.05;
- the panel's measured downtime of a live migration within 10% of the frozen interval in
  CRIU's dump log;
- downtime and total time for a container that keeps at least 100 MB of memory changing.

The panel side is real end to end, as in bench/snapshot_vs_lxc.py: a throwaway data folder
and SQLite database, a Redis of its own on a free port, a real Celery worker process, both lab
hosts enrolled over HTTPS, the POST to /containers/<pk>/migrate/ through Django's full stack
as a logged-in superuser; the clock stops when the Operation row is terminal (observed every
10 ms). The `lxc` side is the CLI with two HTTPS remotes in a private LXD_CONF, `lxc move
h1:c h2:c` (pull mode, live for a RUNNING container), timed around the command.

Downtime is given by three measures, named wherever they appear:
- "CRIU frozen": the interval in the source's migration_dump log from freezing the cgroup to
  "Unfreezing tasks" (the parser is panel.operations.downtime's own). Live migrations only.
- "panel downtime": Operation.downtime_seconds, the panel's own figure (live: CRIU's frozen
  interval, see panel.operations.downtime; checkpoint-move-restore: stateful stop requested
  to the target's start succeeding).
- "sampled": this script's own 10 Hz sampler, the same for every run of either side: the
  first source sample that is Freezing, Frozen, Stopped or gone, or shows CRIU's dump
  operation, to the first target sample Running.

With --floor a third side runs in every round, "api floor" (Bench.api_floor): `lxc move`'s
own requests through the panel's LXD module and a delete retried every 20 ms, nothing else:
the least any tool that ends with the source copy deleted can take.

Rounds of panel live and `lxc move` (which goes first alternates), then two panel
checkpoint-move-restores (there and back), each migration from wherever the container is to
the other host, until each of panel live and `lxc move` has `--pairs` successful runs; the
k-th successful ones are paired (see pairs_of()). A failed migration is recorded, its stuck
dump killed, and a fresh container launched in its place. LXD 5.0.2's `lxc move` ends with
"Failed to delete original instance after copying it: ... busy running a stop operation" and
leaves a STOPPED source copy: the command is timed as it ran ("wall"), and also until that
copy is deleted by `lxc delete h1:c`, retried every 50 ms while LXD is still busy stopping it
("lxc + delete"), the end state the panel reaches by itself. Every container is named
`benchm-*` and deleted at the end, stuck CRIU dumps are killed by PID, and the panel's and
the CLI's client certificates are removed from both hosts' trust stores. Prints figures;
asserts nothing about them.

Beside it: migration_vs_lxc_lab.py (the lab through `lxc`), migration_vs_lxc_sides.py (the
timed sides and the sampler) and migration_vs_lxc_report.py (pairs, ratios and tables).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from _common import (
    discard,
    free_port,
    isolate,
    print_machine,
    progress,
    start_redis_and_worker,
    stop,
)
from migration_vs_lxc_lab import H1, H2, awk_pid, launch, lxc_local, lxc_remote_add, replace
from migration_vs_lxc_report import report, summary
from migration_vs_lxc_sides import LXC_MOVE_FLAGS, Bench

from tests.lab_tools import memory_mb, start_memory_churn

REDIS_PORT = free_port()
os.environ["PANEL_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"


def run_sequence(bench: Bench, sides: list[str], where: dict, label: str) -> list:
    """Run each side once, each migration from wherever the container is to the other host."""
    rows = []
    for side in sides:
        name, source = where["name"], where["host"]
        target = H2 if source is H1 else H1
        progress(f"{label}: {side} {name} {source['name']} -> {target['name']}")
        try:
            if side == "lxc move":
                row = bench.lxc_move(name, source, target)
            elif side == "api floor":
                row = bench.api_floor(name, source, target)
            else:
                row = bench.panel(name, source, target, side.split(" ", 1)[1])
        except Exception as error:  # record it, start over with a fresh container, go on
            row = {"side": side, "source": source["name"], "target": target["name"],
                   "ok": False, "wall": None, "total": None, "downtime": None, "frozen": None,
                   "sampled": None, "leftover": "", "note": f"{type(error).__name__}: {error}",
                   "phases": {}}  # fmt: skip
        row["label"], row["name"] = label, name
        progress(summary(row))
        if row["ok"]:
            where["host"] = target
        else:
            progress(f"FAILED: {row['note'][:600]}; {replace(where)}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="pairs (panel live, lxc move)")
    parser.add_argument("--big-runs", type=int, default=2,
                        help="panel live and stateful_move runs of the 100 MB one")  # fmt: skip
    parser.add_argument("--no-big", action="store_true", help="skip the 100 MB container")
    parser.add_argument("--extra", type=int, default=7, help="rounds allowed for failures")
    parser.add_argument("--lxc-allow-inconsistent", action="store_true",
                        help="time `lxc move --allow-inconsistent`")  # fmt: skip
    parser.add_argument("--floor", action="store_true",
                        help="also time the least any tool can do: Bench.api_floor")  # fmt: skip
    parser.add_argument(
        "--pool",
        default="",
        help="the storage pool of the containers on both hosts, e.g. bt (btrfs)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also migrate with the panel's recommendation (strategy auto)",
    )
    parser.add_argument("--source-grace", type=int, default=20,
                        help="PANEL_MIGRATION_SOURCE_GRACE_SECONDS for the worker")  # fmt: skip
    args = parser.parse_args()
    os.environ["PANEL_MIGRATION_SOURCE_GRACE_SECONDS"] = str(args.source_grace)
    if args.lxc_allow_inconsistent:
        LXC_MOVE_FLAGS.append("--allow-inconsistent")

    folder = isolate("migration")
    from django.core.management import call_command

    from panel import lxd
    from panel.hosts.identity import client_identity
    from tests.lab_tools import enroll, kill_stuck_dumps

    call_command("collectstatic", interactive=False, verbosity=0)
    lxd_conf = Path(tempfile.mkdtemp(prefix="benchm-lxdconf-"))
    tag = uuid.uuid4().hex[:6]
    small = {"base": f"benchm-{tag}", "name": f"benchm-{tag}", "host": H1, "pool": args.pool}
    big = {"base": f"benchm-mem-{tag}", "name": f"benchm-mem-{tag}", "host": H1,
           "pool": args.pool,
           "setup": lambda host, name: start_memory_churn(host, name, megabytes=100)}  # fmt: skip
    for where in (small, big):
        where["used"] = [where["name"]]
    services: list[subprocess.Popen] = []
    try:
        services = start_redis_and_worker(folder, REDIS_PORT, "benchm")
        for lab_host in (H1, H2):
            enroll(lab_host)
            lxc_remote_add(lxd_conf, lab_host)
        bench = Bench(lxd_conf)

        launch(H1, small["name"], args.pool)
        progress("warm-up (not counted): panel stateful_move there and back")
        run_sequence(bench, ["panel stateful_move"] * 2, small, "warm-up")
        rows: list[dict] = []
        done = lambda side: sum(r["ok"] for r in rows if r["side"] == side)  # noqa: E731
        number = 0
        timed = ["panel live", "lxc move"] + (["api floor"] if args.floor else [])
        while any(done(side) < args.pairs for side in timed) and (number < args.pairs + args.extra):
            # A round: panel live and lxc move (and the floor), each round in another order,
            # then two checkpoint-move-restores (there and back). A side already measured
            # `--pairs` times successfully sits out; see pairs_of() for how runs are paired.
            shift = number % len(timed)
            sides = [side for side in timed[shift:] + timed[:shift] if done(side) < args.pairs]
            sides += ["panel stateful_move"] * (2 if done("panel stateful_move") < 2 * args.pairs
                                                else 0)  # fmt: skip
            sides += ["panel auto"] * (2 if args.auto and done("panel auto") < 2 * args.pairs
                                       else 0)  # fmt: skip
            number += 1
            rows += run_sequence(bench, sides, small, f"round {number}")

        big_rows = []
        if not args.no_big:
            launch(H1, big["name"], args.pool)
            progress(f"memory workload running: {big['setup'](H1, big['name']):.0f} MiB")
            sides = ["panel live", "panel stateful_move"] * args.big_runs
            sides.insert(2, "lxc move")
            for side in sides:
                host, name = big["host"], big["name"]
                before_pid, before_mb = awk_pid(host, name), memory_mb(host, name)
                row = run_sequence(bench, [side], big, "100 MB")[0]
                row["memory"] = before_mb
                kept = row["ok"] and before_pid and awk_pid(big["host"], name) == before_pid
                row["awk"] = "kept" if kept else "lost"
                big_rows.append(row)
        print_machine()
        print(f"storage pool on both hosts: {args.pool or 'the profile default (dir)'}")
        print(f"lab: LXD 5.0.2, {H1['name']} {H1['url']} and {H2['name']} {H2['url']}, "
              f"CRIU 4.1.1 via the lab's shim; Redis :{REDIS_PORT}, 1 Celery worker "
              f"(concurrency 2), PANEL_MIGRATION_SOURCE_GRACE_SECONDS="
              f"{os.environ['PANEL_MIGRATION_SOURCE_GRACE_SECONDS']}; the lxc side runs "
              f"`lxc move {' '.join([*LXC_MOVE_FLAGS, 'h1:c', 'h2:c'])}`\n")  # fmt: skip
        report(rows, big_rows)
    finally:
        stop(services)
        for name in small["used"] + big["used"]:
            killed = kill_stuck_dumps(name)
            if killed:
                progress(f"killed stuck criu dump(s) of {name}: {killed}")
            for lab_host in (H1, H2):
                lxc_local(lab_host, "delete", "--force", name, check=False)
        fingerprints = [client_identity().fingerprint] + [
            lxd.certificate_fingerprint(p.read_text())
            for p in [lxd_conf / "client.crt"] if p.exists()]  # fmt: skip
        for lab_host in (H1, H2):
            for fingerprint in fingerprints:
                lxc_local(lab_host, "config", "trust", "remove", fingerprint, check=False)
        shutil.rmtree(lxd_conf, ignore_errors=True)
        discard(folder)


if __name__ == "__main__":
    main()
