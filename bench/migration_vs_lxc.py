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
  "Unfreezing tasks" (the parser is workers.migrations' own). Live migrations only.
- "panel downtime": Operation.downtime_seconds, the panel's own figure (live: CRIU's frozen
  interval, see workers.migrations; checkpoint-move-restore: stateful stop requested to the
  target's start succeeding).
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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import (
    discard,
    isolate,
    lab_state,
    print_machine,
    progress,
    start_redis_and_worker,
    stop,
)
from _common import print_table as _print_table

from tests.lab_tools import memory_mb, start_memory_churn


def print_table(headers: list[str], rows: list) -> None:
    if rows:
        _print_table(headers, rows)
    else:
        print("(no successful runs to show)\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


REDIS_PORT = free_port()
os.environ["PANEL_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
LAB = lab_state(hosts=2)
H1, H2 = LAB["hosts"][:2]
# The panel's clean-up phase while LXD still refuses to delete the stopped source copy (it
# starts when the clean-up does, a little before LXD's stop does).
HELD = "clean up: LXD still stopping the source"
# The panel asks LXD for an unfrozen first copy in a live migration (workers/migrations.py);
# plain `lxc move` does not, unless run with --allow-inconsistent (--lxc-allow-inconsistent).
LXC_MOVE_FLAGS: list[str] = []
REMOTES = {H1["name"]: "h1", H2["name"]: "h2"}


# --- the lab, through the CLI ------------------------------------------------------------------


def lxc_local(lab_host: dict, *args: str, check: bool = True, timeout: float = 120):
    """`lxc` on a lab host's unix socket: setup, cleanup and checking the truth."""
    result = subprocess.run(["lxc", *args], env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"lxc {' '.join(args)} on {lab_host['name']}: {result.stderr.strip()}")
    return result


def status_on(lab_host: dict, name: str) -> str | None:
    listing = json.loads(lxc_local(lab_host, "list", "--format", "json", name).stdout)
    return next((item["status"] for item in listing if item["name"] == name), None)


def frozen_in_dump_log(lab_host: dict, name: str, since: float) -> float | None:
    """The CRIU frozen interval of the newest migration_dump log written since `since`,
    read from the host's /var/log/lxd tree, parsed with the panel's own expressions."""
    from workers.migrations import FREEZER, UNFREEZE

    folder = Path(lab_host["lxd_dir"]).parent / "log" / name
    logs = [p for p in folder.glob("migration_dump_*.log") if p.stat().st_mtime >= since - 1]
    if not logs:
        return None
    lines = max(logs, key=lambda p: p.name).read_text(errors="replace").splitlines()
    start = next((float(m.group(1)) for m in map(FREEZER.match, lines) if m), None)
    end = next((float(m.group(1)) for m in map(UNFREEZE.match, lines) if m), None)
    return round(end - start, 3) if start is not None and end is not None else None


def replace(where: dict) -> str:
    """After a failed migration, start over with a fresh container on the source host.

    The failed one is not reused: LXD 5.0.2 keeps the source's "Live-migrating instance"
    operation RUNNING after its stuck dump is killed, and the next live migration of that
    container was seen to hang FROZEN. Its stuck dumps are killed by PID, every copy deleted.
    """
    from tests.lab_tools import kill_stuck_dumps

    old = where["name"]
    killed = kill_stuck_dumps(old)
    statuses = {h["name"]: status_on(h, old) for h in (H1, H2)}
    for lab_host in (H1, H2):
        lxc_local(lab_host, "delete", "--force", old, check=False)
    where["name"] = f"{where['base']}-{len(where['used'])}"
    where["used"].append(where["name"])
    launch(where["host"], where["name"])
    where.get("setup", lambda *_: None)(where["host"], where["name"])
    return (f"killed stuck dumps {killed}; {old} was {statuses}, deleted; "
            f"continuing with a fresh {where['name']} on {where['host']['name']}")  # fmt: skip


# --- the sampler ------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Downtime as the panel's worker observes it (10 Hz over HTTPS), the same for both
    sides: the source until it is Freezing, Frozen, Stopped or gone, or until LXD's
    "Live-migrating instance" operation for CRIU's dump appears on it (during an unfrozen
    first copy LXD reports the container Running all along), then the target until Running."""

    def __init__(self, source, target, name: str) -> None:
        super().__init__(daemon=True)
        from panel import lxd
        from workers.migrations import DUMP_OPERATION

        self.lxd, self.dump_operation = lxd, DUMP_OPERATION
        self.clients = (lxd.connect(source), lxd.connect(target))  # private to this thread
        self.name = name
        self.down_at: float | None = None
        self.up_at: float | None = None
        self.source_seen: list[str] = []
        self.done = threading.Event()
        self.dumps_before = self.dumps()

    def dumps(self) -> set[str]:
        running = self.lxd._get(self.clients[0], "/operations", recursion=1).get("running")
        return {op["id"] for op in running or [] if op["description"] == self.dump_operation}

    def status(self, client) -> str | None:
        try:
            return self.lxd._get(client, f"/instances/{self.name}")["status"]
        except self.lxd.LXDError as error:
            return None if "not found" in str(error).lower() else "?"

    def run(self) -> None:
        while not self.done.is_set():
            now = time.monotonic()
            if self.down_at is None:
                status = self.status(self.clients[0])
                if not self.source_seen or self.source_seen[-1] != status:
                    self.source_seen.append(str(status))
                frozen = status in ("Freezing", "Frozen", "Stopped", None)
                if frozen or self.dumps() - self.dumps_before:
                    self.down_at = now
            elif self.status(self.clients[1]) == "Running":
                self.up_at = now
                return
            time.sleep(0.1)

    def finish(self) -> float | None:
        self.done.set()
        self.join(timeout=10)
        if self.down_at is None or self.up_at is None:
            return None
        return round(self.up_at - self.down_at, 3)


# --- the two sides ----------------------------------------------------------------------------


class Bench:
    def __init__(self, lxd_conf: Path) -> None:
        from django.contrib.auth.models import User
        from django.test import Client

        from panel.models import Host
        from workers.hosts import target_for

        self.lxd_conf = lxd_conf
        self.hosts = {h.name: h for h in Host.objects.all()}
        self.targets = {name: target_for(host) for name, host in self.hosts.items()}
        self.client = Client()
        self.client.force_login(User.objects.create_superuser("bench", password="x" * 20))

    def instance(self, lab_host: dict, name: str):
        from panel.models import Instance
        from workers.hosts import sync

        for host in self.hosts.values():  # both inventories must show the truth
            sync(host)
        return Instance.objects.present().get(host=self.hosts[lab_host["name"]], name=name)

    def panel(self, name: str, source: dict, target: dict, strategy: str) -> dict:
        from panel.models import Operation

        instance = self.instance(source, name)
        sampler = Sampler(self.targets[source["name"]], self.targets[target["name"]], name)
        sampler.start()
        try:
            pk, click = self.click_and_wait(instance, target, strategy)
        finally:
            sampled = sampler.finish()
        operation = Operation.objects.get(pk=pk)
        result = operation.result or {}
        ok = operation.status == Operation.Status.SUCCEEDED
        row = {
            "side": f"panel {strategy}", "source": source["name"], "target": target["name"],
            "ok": ok, "wall": click, "total": result.get("total_seconds"),
            "downtime": operation.downtime_seconds, "frozen": result.get("criu_frozen_seconds"),
            "observed": result.get("observed_downtime_seconds"),
            "sampled": sampled, "leftover": "",
            "note": "" if ok else f"{operation.outcome} | {operation.error[:300]}",
        }  # fmt: skip
        phases = {p["name"]: p["duration"] for p in result.get("phases", [])}
        row["phases"] = phases
        return row

    def click_and_wait(self, instance, target: dict, strategy: str) -> tuple[int, float]:
        """POST the migration as a logged-in user would; (operation pk, seconds until the
        Operation row is terminal, observed every 10 ms)."""
        from panel.models import Operation

        started = time.perf_counter()
        response = self.client.post(f"/containers/{instance.pk}/migrate/",
                                    {"target": self.hosts[target["name"]].pk,
                                     "strategy": strategy})  # fmt: skip
        location = response.get("Location", "")
        if "/operations/" not in location:
            raise RuntimeError(f"the panel did not start the migration: {location}")
        pk = int(location.split("/")[2])
        while Operation.objects.filter(pk=pk, status__in=Operation.ACTIVE).exists():
            time.sleep(0.01)
        return pk, time.perf_counter() - started

    def lxc_move(self, name: str, source: dict, target: dict) -> dict:
        sampler = Sampler(self.targets[source["name"]], self.targets[target["name"]], name)
        sampler.start()
        try:
            since = time.time()
            started = time.perf_counter()
            origin, destination = REMOTES[source["name"]], REMOTES[target["name"]]
            command = subprocess.run(
                ["lxc", "move", *LXC_MOVE_FLAGS, f"{origin}:{name}", f"{destination}:{name}"],
                env={**os.environ, "LXD_CONF": str(self.lxd_conf)}, capture_output=True, text=True,
                timeout=240,  # a normal one takes about 12 s; a stuck one never ends
            )  # fmt: skip
            wall = time.perf_counter() - started
            from panel import lxd

            # Read before the leftover goes (a file read).
            frozen = frozen_in_dump_log(source, name, since)
            left = lxd.instance_status(self.targets[source["name"]], name)
            finished = self.lxc_delete(origin, name, started) if left is not None else None
        finally:
            sampled = sampler.finish()
        ok = status_on(target, name) == "Running"
        error = command.stderr.strip().splitlines()[-1] if command.returncode else ""
        return {
            "side": "lxc move", "source": source["name"], "target": target["name"], "ok": ok,
            "wall": wall, "total": None, "downtime": None, "frozen": frozen, "sampled": sampled,
            "wall_deleted": finished,  # None: the copy would not go (it is deleted at the end)
            "leftover": f"{left} source copy" if left else "none", "rc": command.returncode,
            "note": error if not ok else "", "stderr": error, "phases": {},
        }  # fmt: skip

    def lxc_delete(self, remote: str, name: str, started: float) -> float | None:
        """Like for like: the panel ends with the source copy deleted; `lxc move` leaves it
        behind, and a user finishes the job with `lxc delete`, retried every 50 ms while LXD
        is busy. Seconds since `started` when it went, or None if it would not."""
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            delete = subprocess.run(["lxc", "delete", f"{remote}:{name}"],
                                    env={**os.environ, "LXD_CONF": str(self.lxd_conf)},
                                    capture_output=True, timeout=60)  # fmt: skip
            if delete.returncode == 0:
                return time.perf_counter() - started
            time.sleep(0.05)
        return None

    def api_floor(self, name: str, source: dict, target: dict) -> dict:
        """The least a tool can do and still end, as the panel does, with the source copy
        deleted: the panel's own two requests (with the unfrozen first copy where the
        source offers it, as the panel asks) through its LXD module, with no queue,
        database, pre-flight or verification, then a delete retried every 20 ms from the
        moment the target's operation succeeds until LXD takes it. What it takes beyond
        `lxc move` is LXD's: it bounds the total time ratio any such tool can reach."""
        from workers.migrations import UNFROZEN_FIRST_COPY

        origin, destination = self.targets[source["name"]], self.targets[target["name"]]
        unfrozen = UNFROZEN_FIRST_COPY in self.hosts[source["name"]].facts["api_extensions"]
        sampler = Sampler(origin, destination, name)
        sampler.start()
        since = time.time()
        try:
            moved, finished, refusals = move_then_delete(origin, destination, name, unfrozen)
        finally:
            sampled = sampler.finish()
        frozen = frozen_in_dump_log(source, name, since)
        ok = finished is not None and status_on(target, name) == "Running"
        return {
            "side": "api floor", "source": source["name"], "target": target["name"], "ok": ok,
            "wall": finished, "total": None, "downtime": None, "frozen": frozen,
            "sampled": sampled, "moved": moved, "refusals": refusals,
            "leftover": "none" if finished else "source copy",
            "note": "" if ok else "the copy would not go", "phases": {},
        }  # fmt: skip


def move_then_delete(origin, destination, name: str, unfrozen: bool):
    """Bench.api_floor's timed part: (target's operation done, copy deleted or None,
    deletes refused), seconds from the first request."""
    from panel import lxd

    started = time.perf_counter()
    definition = lxd.instance_definition(origin, name)
    source_op, secrets = lxd.start_migration_source(
        origin, name, live=True, unfrozen_first_copy=unfrozen
    )
    pull = {"mode": "pull", **lxd.migration_peer(origin, source_op, secrets)}
    body = lxd.migration_target_body(definition, name, True, "", pull)
    target_op, _ = lxd.start_migration_target(destination, body)
    state = lxd.wait_operation(destination, target_op, seconds=10)
    while state is not None and not state.finished and time.perf_counter() - started < 240:
        state = lxd.wait_operation(destination, target_op, seconds=10)
    moved = time.perf_counter() - started
    if state is None or state.status != "Success":
        raise RuntimeError(f"the target's operation ended: {state}")
    refusals = 0
    while time.perf_counter() - started < moved + 30:
        try:
            deleted = lxd.wait_operation(
                origin, lxd.start_delete_instance(origin, name), seconds=10
            )
        except lxd.LXDError:  # refused at once while LXD still stops the copy
            deleted = None
        if deleted is not None and deleted.status == "Success":
            return moved, time.perf_counter() - started, refusals
        refusals += 1
        time.sleep(0.02)
    return moved, None, refusals


# --- the runs ---------------------------------------------------------------------------------


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


def summary(row: dict) -> str:
    return (f"{row['side']:20} {row['source']}->{row['target']} ok={row['ok']} "
            f"wall={fmt(row['wall'])} total={fmt(row['total'])} "
            f"downtime={fmt(row['downtime'])} frozen={fmt(row['frozen'])} "
            f"sampled={fmt(row['sampled'])} {row['leftover']}")  # fmt: skip


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def known(values) -> list:
    return [value for value in values if value is not None]


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def verdict(value, limit) -> str:
    return "-" if value is None else ("PASS" if value <= limit else "FAIL")


def launch(lab_host: dict, name: str) -> None:
    lxc_local(lab_host, "launch", LAB["image_alias"], name)
    time.sleep(3)


def awk_pid(lab_host: dict, name: str) -> str:
    return lxc_local(lab_host, "exec", name, "--", "pidof", "awk", check=False).stdout.strip()


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
    parser.add_argument("--source-grace", type=int, default=20,
                        help="PANEL_MIGRATION_SOURCE_GRACE_SECONDS for the worker")  # fmt: skip
    args = parser.parse_args()
    os.environ["PANEL_MIGRATION_SOURCE_GRACE_SECONDS"] = str(args.source_grace)
    if args.lxc_allow_inconsistent:
        LXC_MOVE_FLAGS.append("--allow-inconsistent")

    folder = isolate("migration")
    from django.conf import settings
    from django.core.management import call_command

    from panel import lxd
    from tests.lab_tools import enroll, kill_stuck_dumps

    call_command("collectstatic", interactive=False, verbosity=0)
    lxd_conf = Path(tempfile.mkdtemp(prefix="benchm-lxdconf-"))
    tag = uuid.uuid4().hex[:6]
    small = {"base": f"benchm-{tag}", "name": f"benchm-{tag}", "host": H1}
    big = {"base": f"benchm-mem-{tag}", "name": f"benchm-mem-{tag}", "host": H1,
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

        launch(H1, small["name"])
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
            number += 1
            rows += run_sequence(bench, sides, small, f"round {number}")

        big_rows = []
        if not args.no_big:
            launch(H1, big["name"])
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
        cert = Path(settings.PANEL_CLIENT_CERT_DIR) / "client.crt"
        fingerprints = [lxd.certificate_fingerprint(p.read_text())
                        for p in (cert, lxd_conf / "client.crt") if p.exists()]  # fmt: skip
        for lab_host in (H1, H2):
            for fingerprint in fingerprints:
                lxc_local(lab_host, "config", "trust", "remove", fingerprint, check=False)
        shutil.rmtree(lxd_conf, ignore_errors=True)
        discard(folder)


def lxc_remote_add(lxd_conf: Path, lab_host: dict) -> None:
    subprocess.run(
        ["lxc", "remote", "add", REMOTES[lab_host["name"]], lab_host["url"],
         "--password", lab_host["trust_password"], "--accept-certificate"],
        env={**os.environ, "LXD_CONF": str(lxd_conf)}, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip


def pairs_of(rows: list[dict]) -> list[dict]:
    """The k-th successful panel live migration with the k-th successful `lxc move` (they ran
    in the same or a neighbouring round, in alternating order), and the (2k-1)-th and 2k-th
    successful checkpoint-move-restores with them. Failed runs are listed, not paired: on
    this lab a restore fails at random (see docs/benchmarks.md), on either side."""
    ok = lambda side: [r for r in rows if r["side"] == side and r["ok"]]  # noqa: E731
    cmr = ok("panel stateful_move")
    pairs = []
    floors = ok("api floor")
    for number, (live, move) in enumerate(zip(ok("panel live"), ok("lxc move"), strict=False)):
        mine = cmr[2 * number : 2 * number + 2]
        floor = floors[number] if number < len(floors) else None
        pairs.append({
            "label": f"{number + 1}: {live['label']} / {move['label']}",
            "cmr_frozen": [ratio(r["downtime"], move["frozen"]) for r in mine],
            "cmr_sampled": [ratio(r["sampled"], move["sampled"]) for r in mine],
            "live_frozen": ratio(live["downtime"], move["frozen"]),
            "live_sampled": ratio(live["sampled"], move["sampled"]),
            "wall": ratio(live["wall"], move["wall"]),
            "total": ratio(live["total"], move["wall"]),
            "like_for_like": ratio(live["wall"], move["wall_deleted"]),
            "held": live["phases"].get(HELD),
            "own": ratio(live["wall"] - live["phases"].get(HELD, 0), move["wall"]),
            "floor": ratio(floor["wall"], move["wall"]) if floor else None,
            "live_floor": ratio(live["wall"], floor["wall"]) if floor else None,
            "criu_gap": ratio(abs(live["observed"] - live["frozen"]), live["frozen"])
            if live.get("observed") is not None and live["frozen"] else None,
        })  # fmt: skip
    return pairs


def report(rows: list[dict], big_rows: list[dict]) -> None:
    if rows:
        report_pairs(rows)
    if big_rows:
        report_big(big_rows)
    failures = [r for r in rows + big_rows if not r["ok"]]
    for r in failures:
        note = " / ".join(line.strip() for line in r["note"].splitlines() if line.strip())
        print(f"FAILED {r['label']} {r['side']} {r['source']}→{r['target']}: {note[:400]}")
    notes = {r["stderr"] for r in rows + big_rows if r.get("stderr")}
    for note in notes:
        print(f"lxc move said: {note}")


def report_pairs(rows: list[dict]) -> None:
    print("Every migration (counter container). wall: click→terminal for the panel, the "
          "command for lxc; total: Operation.result.total_seconds; downtime: "
          "Operation.downtime_seconds; CRIU frozen: migration_dump log; sampled: this "
          "script's 10 Hz sampler. Seconds.\n")  # fmt: skip
    print_table(
        ["run", "side", "direction", "ok", "wall", "total", "downtime", "CRIU frozen", "sampled",
         "lxc leftover", "lxc + delete"],
        [(r["label"], r["side"], f"{r['source']}→{r['target']}", "yes" if r["ok"] else "NO",
          fmt(r["wall"]), fmt(r["total"]), fmt(r["downtime"]), fmt(r["frozen"]),
          fmt(r["sampled"]), r["leftover"], fmt(r.get("wall_deleted"))) for r in rows],
    )  # fmt: skip
    pairs = pairs_of(rows)
    print(
        "Per pair ratios. Downtime: panel downtime / lxc move CRIU frozen, and sampled / "
        "sampled (same measure both sides). Total: panel live / lxc move command.\n"
    )
    print_table(
        ["pair", "CMR downtime / lxc (frozen)", "CMR sampled / lxc sampled",
         "live downtime / lxc (frozen)", "live sampled / lxc sampled",
         "live click→done / lxc", "live total_seconds / lxc",
         "live click→done / (lxc + delete)", "clean-up waiting for LXD, s",
         "live click→done without that wait / lxc", "|live observed - frozen| / frozen",
         "api floor / lxc", "live click→done / api floor"],
        [(p["label"], " ".join(fmt(v) for v in p["cmr_frozen"]),
          " ".join(fmt(v) for v in p["cmr_sampled"]), fmt(p["live_frozen"]),
          fmt(p["live_sampled"]), fmt(p["wall"]), fmt(p["total"]), fmt(p["like_for_like"]),
          fmt(p["held"]), fmt(p["own"]),
          fmt(None if p["criu_gap"] is None else 100 * p["criu_gap"], 1) + " %",
          fmt(p["floor"]), fmt(p["live_floor"]))
         for p in pairs],
    )  # fmt: skip
    flat = lambda key: [v for p in pairs for v in p[key]]  # noqa: E731
    pick = lambda key: [p[key] for p in pairs]  # noqa: E731
    # The panel shows CRIU's frozen interval as a live migration's downtime when it has the
    # log; what is compared here is its own independent observation from LXD's states.
    gaps = [ratio(abs(r["observed"] - r["frozen"]), r["frozen"]) for r in rows
            if r["side"] == "panel live" and r["ok"] and r.get("observed") is not None
            and r["frozen"]]  # fmt: skip
    worst = max(gaps) if gaps else None
    shown = [ratio(abs(r["downtime"] - r["frozen"]), r["frozen"]) for r in rows
             if r["side"] == "panel live" and r["ok"] and r["downtime"] is not None
             and r["frozen"]]  # fmt: skip
    print(f"Medians over {len(pairs)} pairs, against the targets\n")
    print_table(
        ["figure", "median", "target", "verdict"],
        [("downtime ratio, panel checkpoint-move-restore / lxc move (CRIU frozen)",
          fmt(median(flat("cmr_frozen")), 3), "≤ 0.3", verdict(median(flat("cmr_frozen")), 0.3)),
         ("downtime ratio, same, sampled / sampled", fmt(median(flat("cmr_sampled")), 3),
          "≤ 0.3", verdict(median(flat("cmr_sampled")), 0.3)),
         ("downtime ratio, panel live / lxc move (CRIU frozen)",
          fmt(median(pick("live_frozen")), 3), "-", "-"),
         ("downtime ratio, panel live / lxc move, sampled / sampled",
          fmt(median(pick("live_sampled")), 3), "-", "-"),
         ("total time ratio, panel live click→done / lxc move", fmt(median(pick("wall")), 3),
          "≤ 1.05", verdict(median(pick("wall")), 1.05)),
         ("total time ratio, panel live total_seconds / lxc move", fmt(median(pick("total")), 3),
          "≤ 1.05", verdict(median(pick("total")), 1.05)),
         ("total time ratio, panel live click→done / lxc move + lxc delete of its leftover",
          fmt(median(known(pick("like_for_like"))), 3), "≤ 1.05",
          verdict(median(known(pick("like_for_like"))), 1.05)),
         ("total time ratio, api floor (lxc move's requests + delete, nothing else) / lxc move",
          fmt(median(known(pick("floor"))), 3), "-", "-"),
         ("total time ratio, panel live click→done / api floor",
          fmt(median(known(pick("live_floor"))), 3), "-", "-"),
         ("panel's clean-up waiting for LXD to release the source copy (lxcfs's sleep 0.5s), s",
          fmt(median(known(pick("held"))), 3), "-", "-"),
         ("total time ratio, panel live click→done minus that wait / lxc move",
          fmt(median(pick("own")), 3), "-", "-"),
         ("|panel live downtime shown - CRIU frozen| / frozen, worst of all live runs",
          fmt(None if not shown else 100 * max(shown), 1) + " %", "≤ 10 %",
          verdict(max(shown) if shown else None, 0.10)),
         ("|panel's observed downtime - CRIU frozen| / frozen, median of all live runs",
          fmt(None if not gaps else 100 * median(gaps), 1) + " %", "≤ 10 %",
          verdict(median(gaps) if gaps else None, 0.10)),
         ("|panel's observed downtime - CRIU frozen| / frozen, worst of all live runs",
          fmt(None if worst is None else 100 * worst, 1) + " %", "≤ 10 %", verdict(worst, 0.10))],
    )  # fmt: skip
    print("Medians per side over successful runs (seconds); runs ok / runs\n")
    sides = list(dict.fromkeys(r["side"] for r in rows))
    print_table(
        ["side", "runs ok", "wall", "total", "downtime", "CRIU frozen", "sampled"],
        [(side, f"{sum(r['ok'] for r in rows if r['side'] == side)}/"
          f"{sum(r['side'] == side for r in rows if r['label'] != 'warm-up')}",
          *(fmt(median(r[key] for r in rows if r["side"] == side and r["ok"]
                       and r["label"] != "warm-up"))
            for key in ("wall", "total", "downtime", "frozen", "sampled")))
         for side in sides],
    )  # fmt: skip
    floors = [r for r in rows if r["side"] == "api floor" and r["ok"]]
    if floors:
        print(f"api floor: the target's operation succeeded after "
              f"{fmt(median(r['moved'] for r in floors))} s (median); LXD refused the delete "
              f"{fmt(median(r['refusals'] for r in floors), 0)} times (median) before taking "
              f"it, the copy went at {fmt(median(r['wall'] for r in floors))} s\n")  # fmt: skip
    phase_rows = []
    for side in ("panel live", "panel stateful_move"):
        names = dict.fromkeys(n for r in rows if r["side"] == side for n in r["phases"])
        for phase in names:
            values = [r["phases"].get(phase) for r in rows if r["side"] == side and r["ok"]]
            phase_rows.append((side, phase, fmt(median(values))))
    print("Panel phases (Operation.result.phases), medians in seconds\n")
    print_table(["side", "phase", "median s"], phase_rows)


def report_big(big_rows: list[dict]) -> None:
    print(
        "The 100 MB container: one busybox awk rewriting ~60,000 strings of 1 KB in a "
        "loop (anonymous memory of one process, no forks); memory: LXD's memory usage "
        "of the container just before the migration; awk: same PID afterwards.\n"
    )
    print_table(
        ["side", "direction", "ok", "memory MiB", "wall", "total", "downtime",
         "CRIU frozen", "sampled", "awk", "lxc leftover"],
        [(r["side"], f"{r['source']}→{r['target']}", "yes" if r["ok"] else "NO",
          f"{r['memory']:.0f}", fmt(r["wall"]), fmt(r["total"]), fmt(r["downtime"]),
          fmt(r["frozen"]), fmt(r["sampled"]), r["awk"], r["leftover"]) for r in big_rows],
    )  # fmt: skip


if __name__ == "__main__":
    main()
