"""bench/fault_matrix.py: one case of the matrix. A fresh counter container on host1, the
operation asked through the panel's request functions (a real worker runs it), the fault
injected at the phase asked for, undone later, then the truth read from the hosts. Not run on
its own."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from _common import progress

from tests.fault_tools import (
    cut_link,
    dumps_holding,
    kill_daemon,
    mend_link,
    restore_lab,
    wait_for_stage,
)
from tests.lab_tools import (
    instance_status,
    launch_counter,
    lxc,
    read_boot_id,
    read_counter,
    unique_name,
)

# When each phase of a migration is reached, as the row's stage shows it, and how long after
# that the fault hits. Live migration on dir pools: CRIU holds the container for about 10.5 s
# (LAB.md section 6): its dump first, then the final sync; the restore ends it.
PHASES = {
    "live": {
        "pre-flight": (("starting",), 0.0),
        "first copy": (("transferring",), 0.1),
        "CRIU dump (frozen)": (("checkpointing",), 0.3),
        "transfer": (("checkpointing",), 4.0),
        "restore on the target": (("checkpointing",), 9.8),
        "clean-up": (("cleaning up",), 0.0),
    },
    "stateful_move": {
        "pre-flight": (("starting",), 0.0),
        "CRIU dump (checkpoint)": (("checkpointing",), 0.2),
        "transfer": (("transferring",), 0.3),
        "restore on the target": (("restoring",), 0.0),
        "clean-up": (("cleaning up",), 0.0),
    },
}
ONE_HOST = {  # operation kind -> the stage during which its CRIU work runs
    "stateful_snapshot": ("checkpointing",),
    "restore": ("restoring",),
    "stateful_stop": ("checkpointing",),
}
DAEMON_DOWN_SECONDS = 15  # a killed LXD comes back (systemd would restart it sooner)
LINK_DOWN_SECONDS = 45  # longer than the peer wait: the panel decides without the host


@dataclass
class Case:
    fault: str  # kill target, kill source, cut link, kill worker, restart Redis
    phase: str
    strategy: str  # a migration strategy, or a one-host operation kind

    @property
    def migration(self) -> bool:
        return self.strategy in PHASES


@dataclass
class Outcome:
    case: Case
    status: str = "?"
    terminal_seconds: float | None = None
    ended_on: str = "?"
    processes: str = "?"
    partial_copies: str = "?"
    bundle: str = "?"
    hit_stage: str = ""  # the operation's stage when the fault hit
    # The lab's `up` also kills what a killed daemon left, its containers included (a real
    # host's LXD restarts and leaves them running): was the container still alive, with the
    # same processes, on the killed host right before that restart?
    alive_until_restart: str = "n/a"
    frozen: bool = False
    duplicate: bool = False
    note: str = ""
    follow_ups: list[str] = field(default_factory=list)


class Services:
    """The bench's Redis and Celery worker, which the worker and Redis faults kill."""

    def __init__(self, folder, redis_port: int) -> None:
        self.folder, self.redis_port = folder, redis_port
        self.redis: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save",
             "", "--appendonly", "yes", "--dir", str(self.folder)], stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)

    def start_worker(self) -> None:
        from workers.celery import app

        log = (self.folder / "worker.log").open("a")
        hostname = f"faults-{time.time_ns()}@localhost"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "panel",
             "--hostname", hostname, "--concurrency", "3",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for _ in range(120):  # this worker's answer: the agents are Celery workers too
            try:
                # A new connection each time: the pooled ones may still point at the Redis
                # that a case restarted.
                with app.connection_for_write() as connection:
                    if app.control.ping([hostname], timeout=0.5, connection=connection):
                        return
            except (OSError, redis.exceptions.ConnectionError):
                time.sleep(0.5)
        raise RuntimeError(f"the worker did not answer (log {self.folder / 'worker.log'})")

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(timeout=30)

    def stop(self) -> None:
        for process in (self.worker, self.redis):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def ask(case: Case, instance, target_host):
    from panel.operations.requests import request_operation

    if case.migration:
        params = {"strategy": case.strategy, "strategy_reason": "the fault matrix", "pool": ""}
        return request_operation(instance, "migrate", None, params, target_host=target_host,
                                 target_name=instance.name)  # fmt: skip
    params = {"snapshot": "cut"} if case.strategy == "stateful_snapshot" else {}
    if case.strategy == "restore":
        params = {"snapshot": "before", "stateful": True}
    return request_operation(instance, case.strategy, None, params)


def init_pid(lab_host: dict, name: str) -> int | None:
    state = lxc(lab_host, "query", f"/1.0/instances/{name}/state", check=False, timeout=10)
    try:
        return json.loads(state).get("pid") or None
    except ValueError:
        return None


def alive_with(pid: int | None, boot: str) -> str:
    """From /proc: does that init still run the container's first boot?"""
    if pid is None:
        return "n/a"
    try:
        seen = (Path("/proc") / str(pid) / "root" / "tmp" / "boot").read_text().strip()
    except OSError:
        return "no"
    return "yes" if seen == boot else "no"


def victim_of(case: Case, lab: dict) -> dict:
    return lab["hosts"][1 if case.fault in ("kill target", "cut link") and case.migration else 0]


def inject(case: Case, lab: dict, services: Services, operation_id: int, name: str):
    """Wait for the phase, then break something: (the moment it broke, the stage then, the
    init PID of the container on the host that breaks, if it runs there)."""
    stages, delay = (PHASES[case.strategy][case.phase] if case.migration
                     else (ONE_HOST[case.strategy], 0.2))  # fmt: skip
    wait_for_stage(operation_id, stages, timeout=180)
    time.sleep(delay)
    pid = init_pid(victim_of(case, lab), name) if case.fault.startswith("kill ") else None
    h1, h2 = lab["hosts"][0]["name"], lab["hosts"][1]["name"]
    victim = h2 if case.fault in ("kill target", "cut link") and case.migration else h1
    if case.fault.startswith("kill") and case.fault != "kill worker":
        kill_daemon(victim)
    elif case.fault == "cut link":
        cut_link(victim)
    elif case.fault == "kill worker":
        services.kill_worker()
    else:
        services.kill_redis()
    from panel.models import Operation

    return time.monotonic(), Operation.objects.get(pk=operation_id).stage, pid


def undo(case: Case, services: Services, redis_url: str, victim: str, check=None) -> None:
    if case.fault == "restart Redis":
        time.sleep(2)
        services.start_redis()
    elif case.fault == "kill worker":
        services.start_worker()
    elif case.fault == "cut link":
        time.sleep(LINK_DOWN_SECONDS)
        mend_link(victim)
    else:
        time.sleep(DAEMON_DOWN_SECONDS)
        if check is not None:
            check()
        restore_lab(redis_url, agents=True, host=victim)


def run_case(case: Case, lab: dict, hosts: tuple, services: Services, redis_url: str) -> Outcome:
    from panel.hosts.inventory import sync
    from panel.models import Instance, Operation

    lab1 = lab["hosts"][0]
    outcome = Outcome(case)
    name = unique_name("fm")
    launch_counter(lab, lab1, name)
    try:
        deadline = time.monotonic() + 60
        while read_counter(lab1, name) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        if case.strategy == "restore":
            lxc(lab1, "snapshot", name, "before", "--stateful")
        sync(hosts[0])
        instance = Instance.objects.get(host=hosts[0], name=name)
        boot = read_boot_id(lab1, name)
        operation = ask(case, instance, hosts[1])
        broke_at, outcome.hit_stage, pid = inject(case, lab, services, operation.pk, name)

        def check() -> None:
            outcome.alive_until_restart = alive_with(pid, boot)

        victim = victim_of(case, lab)["name"]
        undoing = threading.Thread(target=undo, args=(case, services, redis_url, victim, check))
        undoing.start()
        ended = wait_ended(case, operation.pk, broke_at)
        outcome.terminal_seconds = round(time.monotonic() - broke_at, 1) if ended else None
        undoing.join()
        if ended is None and case.fault == "kill worker":
            ended = reconcile_silent(operation.pk)
            outcome.note = "ended by the reconciler once the worker's silence passed; "
        settle_aftercare(operation.pk, outcome)
        ended = Operation.objects.get(pk=operation.pk)
        outcome.status = ended.status
        outcome.note += ended.outcome[:300]
        read_truth(outcome, lab, name, boot)
        outcome.bundle = bundle_state(ended)
    except Exception as error:  # the case broke the bench itself: say so, go on
        outcome.note = f"{type(error).__name__}: {error}"[:300]
    finally:
        clean_up(lab, name)
    progress(f"{case.fault} / {case.phase} / {case.strategy}: {outcome.status} "
             f"in {outcome.terminal_seconds} s, on {outcome.ended_on}, processes "
             f"{outcome.processes}; {outcome.note[:160]}")  # fmt: skip
    return outcome


def wait_ended(case: Case, pk: int, since: float):
    from panel.models import Operation

    deadline = since + (20 if case.fault == "kill worker" else 300)
    while time.monotonic() < deadline:
        found = Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first()
        if found:
            return found
        time.sleep(0.2)
    return None


def reconcile_silent(pk: int):
    """The worker died: end it as the reconciler will once the silence threshold passed
    (the figure is then the reconciler's own time: the bound adds that threshold and the
    beat period)."""
    from django.conf import settings
    from django.utils import timezone

    from panel.models import Operation
    from panel.operations.reconciler import reconcile

    later = timezone.now() + dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS + 1)
    for _ in range(10):
        reconcile(now=later)
        found = Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first()
        if found:
            return found
        time.sleep(5)
    return None


def settle_aftercare(pk: int, outcome: Outcome) -> None:
    """Once the fault is undone, a few reconciler rounds: the aftercare's follow-ups run."""
    from panel.models import Operation
    from panel.operations.aftercare import open_items
    from panel.operations.reconciler import reconcile

    for _ in range(4):
        reconcile()
        follow_ups = [op for op in Operation.objects.all() if op.params.get("aftercare_of") == pk]
        deadline = time.monotonic() + 180
        while Operation.objects.filter(pk__in=[op.pk for op in follow_ups],
                                       status__in=Operation.ACTIVE).exists():  # fmt: skip
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        outcome.follow_ups = [f"#{op.pk} {op.kind}" for op in follow_ups]
        if not open_items(Operation.objects.get(pk=pk)):
            return
        time.sleep(3)


def read_truth(outcome: Outcome, lab: dict, name: str, boot: str) -> None:
    """From the hosts themselves: where it runs, with which processes, what is left where."""
    statuses = {h["name"]: instance_status(h, name) for h in lab["hosts"][:2]}
    running = [host for host, status in statuses.items() if status == "Running"]
    outcome.duplicate = len(running) > 1
    outcome.frozen = bool(dumps_holding(name))
    if running:
        home = running[0]
        outcome.ended_on = f"{home} RUNNING"
        lab_home = next(h for h in lab["hosts"] if h["name"] == home)
        outcome.processes = "yes" if read_boot_id(lab_home, name) == boot else "no (restarted)"
    else:
        present = [f"{host} {status.upper()}" for host, status in statuses.items() if status]
        home = present[0].split()[0] if present else ""
        outcome.ended_on = ", ".join(present) or "nowhere"
        outcome.processes = "no (stopped)" if present else "lost"
    others = [f"{host} ({status})" for host, status in statuses.items()
              if status and host != home]  # fmt: skip
    outcome.partial_copies = ", ".join(others) or "none"


def bundle_state(operation) -> str:
    """Failed ones: the automatic bundle, with every item of both hosts accounted for."""
    from panel.models import Bundle

    if operation.status not in ("failed", "interrupted"):
        return "n/a"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        bundle = operation.bundles.exclude(status=Bundle.Status.COLLECTING).first()
        if bundle is not None:
            break
        time.sleep(1)
    else:
        return "not built"
    if bundle.status != Bundle.Status.READY:
        return f"failed: {bundle.error[:80]}"
    items = bundle.manifest["items"]
    hosts = {item["host"] for item in items}
    unexplained = [item for item in items if item["status"] == "missing" and not item["reason"]]
    missing = sum(item["status"] == "missing" for item in items)
    return (f"complete ({len(hosts)} hosts, {missing} missing with reasons)" if not unexplained
            else f"{len(unexplained)} missing without reason")  # fmt: skip


def clean_up(lab: dict, name: str) -> None:
    for pid in dumps_holding(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for host in lab["hosts"][:2]:
        lxc(host, "delete", "--force", name, check=False, timeout=90)


def as_row(outcome: Outcome) -> list:
    row = dataclasses.asdict(outcome)
    phase = outcome.case.phase + (f" (at {outcome.hit_stage})" if outcome.hit_stage else "")
    return [outcome.case.fault, phase, outcome.case.strategy, row["status"],
            row["terminal_seconds"], row["ended_on"], row["processes"],
            row["alive_until_restart"], row["partial_copies"],
            row["bundle"], ", ".join(row["follow_ups"]) or "-"]  # fmt: skip
