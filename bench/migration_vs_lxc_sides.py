"""bench/migration_vs_lxc.py: the sides that are timed (the panel from the click, `lxc
move`, and the api floor) and the 10 Hz sampler that observes every one of them the same way.
Not run on its own."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from migration_vs_lxc_lab import (
    REMOTES,
    criu_breakdown,
    frozen_in_dump_log,
    newest_log,
    status_on,
)

# The panel asks LXD for an unfrozen first copy in a live migration (UNFROZEN_FIRST_COPY in
# panel/operations/transfer.py); plain `lxc move` does not, unless run with
# --allow-inconsistent (--lxc-allow-inconsistent).
LXC_MOVE_FLAGS: list[str] = []


class Sampler(threading.Thread):
    """Downtime as the panel's worker observes it (10 Hz over HTTPS), the same for both
    sides: the source until it is Freezing, Frozen, Stopped or gone, or until LXD's
    "Live-migrating instance" operation for CRIU's dump appears on it (during an unfrozen
    first copy LXD reports the container Running all along), then the target until Running."""

    def __init__(self, source, target, name: str) -> None:
        super().__init__(daemon=True)
        from panel import lxd
        from panel.operations.downtime import DUMP_OPERATION

        self.lxd, self.dump_operation = lxd, DUMP_OPERATION
        self.targets = (source, target)
        self.name = name
        self.down_at: float | None = None
        self.up_at: float | None = None
        self.source_seen: list[str] = []
        self.done = threading.Event()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.dumps_before: set[str] = set()

    def start(self) -> None:
        """Start sampling, and return once this thread has its own client to each host (the
        panel's LXD module keeps clients per thread) and knows the dumps already running:
        before the timed part begins."""
        super().start()
        self.ready.wait()
        if self.failure is not None:
            raise self.failure

    def dumps(self) -> set[str]:
        return self.lxd.running_operations(self.targets[0], self.dump_operation)

    def status(self, target) -> str | None:
        try:
            return self.lxd.instance_status(target, self.name)  # None: not found
        except self.lxd.LXDError:
            return "?"

    def run(self) -> None:
        try:
            for target in self.targets:
                self.lxd.fresh_client(target)
            self.dumps_before = self.dumps()
        except Exception as error:
            self.failure = error
            return
        finally:
            self.ready.set()
        while not self.done.is_set():
            now = time.monotonic()
            if self.down_at is None:
                status = self.status(self.targets[0])
                if not self.source_seen or self.source_seen[-1] != status:
                    self.source_seen.append(str(status))
                frozen = status in ("Freezing", "Frozen", "Stopped", None)
                if frozen or self.dumps() - self.dumps_before:
                    self.down_at = now
            elif self.status(self.targets[1]) == "Running":
                self.up_at = now
                return
            time.sleep(0.1)

    def finish(self) -> float | None:
        self.done.set()
        self.join(timeout=10)
        if self.down_at is None or self.up_at is None:
            return None
        return round(self.up_at - self.down_at, 3)


class Bench:
    def __init__(self, lxd_conf: Path) -> None:
        from django.contrib.auth.models import User
        from django.test import Client

        from panel.hosts.connection import target_for
        from panel.models import Host

        self.lxd_conf = lxd_conf
        self.hosts = {h.name: h for h in Host.objects.all()}
        self.targets = {name: target_for(host) for name, host in self.hosts.items()}
        self.client = Client()
        self.client.force_login(User.objects.create_superuser("bench", password="x" * 20))

    def instance(self, lab_host: dict, name: str):
        from panel.hosts.inventory import sync
        from panel.models import Instance

        for host in self.hosts.values():  # both inventories must show the truth
            sync(host)
        return Instance.objects.present().get(host=self.hosts[lab_host["name"]], name=name)

    def panel(self, name: str, source: dict, target: dict, strategy: str) -> dict:
        from panel.models import Operation

        instance = self.instance(source, name)
        sampler = Sampler(self.targets[source["name"]], self.targets[target["name"]], name)
        sampler.start()
        since = time.time()
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
        row["strategy"] = operation.params.get("strategy", strategy)
        row["pools"] = result.get("pools", {})
        if row["strategy"] == "live" and operation.instance is not None:
            # The source's dump log went with the copy; the panel kept it (InstanceLog).
            dumps = [log for log in operation.instance.logs.all()
                     if log.filename.startswith("migration_dump_")]  # fmt: skip
            dump = max(dumps, key=lambda log: log.filename).content if dumps else ""
            restore = newest_log(target, name, "migration_restore_", since)
            row["criu"] = criu_breakdown(dump, restore)
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
            dump = newest_log(source, name, "migration_dump_", since)
            criu = criu_breakdown(dump, newest_log(target, name, "migration_restore_", since))
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
            "note": error if not ok else "", "stderr": error, "phases": {}, "criu": criu,
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
        from panel.operations.transfer import UNFROZEN_FIRST_COPY

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
