"""Host maintenance on the lab (issue 21): an evacuation of N running containers (default 10)
from host1 to host2 and the bring back home, then a checkpoint in place of the same N, a
restart of host1's LXD as a reboot would do it, and the bring back.

Run by hand, the lab up, as root, holding the lab's lock:

    flock /tmp/lab.lock .venv/bin/python bench/maintenance.py [--containers 10] [--no-restart]

The panel side is real end to end: a throwaway data folder and SQLite database, a Redis of
its own on a free port, a real Celery worker (concurrency 4), both lab hosts enrolled over
HTTPS, each plan drawn up by the worker and confirmed through panel.maintenance.requests
(what the web, the API and the shell call). Containers are busybox counters named
`benchm-*`, deleted at the end with the panel's certificate from both trust stores.

Figures, per host action:
- total: the parent operation's start (its claim, right after the confirmation) to its end,
  the last child verified;
- downtime per container: each migration's measured downtime (panel.operations.downtime);
  for the checkpoint in place, from its stateful stop starting to its restore ending, which
  includes the LXD restart;
- ideal: the slowest single child (its start, once it had its host slots, to its end) times
  the rounds the host limit allows, ceil(N / PANEL_HOST_MAX_OPERATIONS); the ratio total /
  ideal is what launching the children one after another costs (goal: at most 1.1).
Prints figures; asserts nothing about them.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import time
from pathlib import Path

from _common import (
    discard,
    free_port,
    isolate,
    lab_state,
    print_machine,
    print_table,
    progress,
    start_redis_and_worker,
    stop,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--no-restart", action="store_true", help="bring back without it")
    args = parser.parse_args()
    lab = lab_state(hosts=2)
    port = free_port()
    os.environ["PANEL_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    folder = isolate("maintenance")
    from django.conf import settings

    from panel import lxd
    from tests.lab_tools import enroll, lxc, running_counters

    host1, host2 = lab["hosts"][:2]
    client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    services: list[subprocess.Popen] = []
    rows: list[list] = []
    try:
        services = start_redis_and_worker(folder, port, "benchm-maint", concurrency=4)
        hosts = [enroll(host1), enroll(host2)]
        with running_counters(lab, host1, "benchm-m", args.containers) as names:
            rows += evacuate_and_back(hosts, names)
            rows += checkpoint_and_back(hosts, names, host1, restart=not args.no_restart)
    finally:
        fingerprint = lxd.certificate_fingerprint(Path(client_cert[0]).read_text())
        for lab_host in (host1, host2):
            lxc(lab_host, "config", "trust", "remove", fingerprint, check=False)
        stop(services)
        discard(folder)
    print_machine()
    print(f"PANEL_HOST_MAX_OPERATIONS={os.environ.get('PANEL_HOST_MAX_OPERATIONS', '2')}\n")
    print_table(
        ["host action", "containers", "plan drawn up", "total", "rounds", "slowest child",
         "ideal", "total / ideal", "downtime min / median / max", "strategies"],
        rows,
    )  # fmt: skip


def run(host, mode: str, names: list[str]):
    """Ask for the plan (leaving out the lab's other containers), wait for it, confirm it,
    wait for the parent to end; the parent and how long the plan took to draw up."""
    from django.contrib.auth.models import User

    from panel.maintenance.requests import confirm_plan, request_plan
    from panel.models import MaintenancePlan, Operation

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password="x" * 20
    )
    others = list(host.instances.present().exclude(name__in=names).values_list("name", flat=True))
    asked = time.monotonic()
    plan = request_plan(host, mode, user, "stop", {"skip": others} if others else {})
    while MaintenancePlan.objects.get(pk=plan.pk).state == "drawing":
        time.sleep(0.05)
    plan = MaintenancePlan.objects.get(pk=plan.pk)
    drawn = time.monotonic() - asked
    if plan.state != "ready":
        raise SystemExit(f"plan #{plan.pk} ({mode}) failed: {plan.preflight.outcome}")
    parent = confirm_plan(plan, user)
    progress(f"{mode}: plan #{plan.pk} ({plan.summary}) confirmed as #{parent.pk}")
    while Operation.objects.filter(pk=parent.pk, status__in=Operation.ACTIVE).exists():
        time.sleep(0.1)
    parent.refresh_from_db()
    progress(f"  #{parent.pk} {parent.status}: {parent.outcome}")
    if parent.status != Operation.Status.SUCCEEDED:
        raise SystemExit(f"maintenance #{parent.pk} did not succeed: {parent.outcome}")
    return parent, drawn


def seconds(start, end) -> float:
    return (end - start).total_seconds()


def figures(label: str, parent, drawn: float, downtimes: list[float]) -> list:
    from django.conf import settings

    children = list(parent.children.all())
    slowest = max(seconds(c.started_at, c.finished_at) for c in children)
    rounds = math.ceil(len(children) / settings.HOST_MAX_OPERATIONS)
    total = seconds(parent.started_at, parent.finished_at)
    strategies = sorted({c.params.get("strategy") or c.kind for c in children})
    spread = (
        f"{min(downtimes):.2f} / {statistics.median(downtimes):.2f} / {max(downtimes):.2f}"
        if downtimes
        else "-"
    )
    return [label, len(children), f"{drawn:.2f} s", f"{total:.2f} s", rounds,
            f"{slowest:.2f} s", f"{slowest * rounds:.2f} s", f"{total / (slowest * rounds):.3f}",
            spread, ", ".join(strategies)]  # fmt: skip


def evacuate_and_back(hosts, names: list[str]) -> list[list]:
    away, drawn = run(hosts[0], "evacuate", names)
    measured = [c.downtime_seconds for c in away.children.all() if c.downtime_seconds is not None]
    home, drawn_back = run(hosts[0], "bring_back", names)
    back = [c.downtime_seconds for c in home.children.all() if c.downtime_seconds is not None]
    return [
        figures(f"evacuate {hosts[0].name} -> {hosts[1].name}", away, drawn, measured),
        figures("bring back (moves home)", home, drawn_back, back),
    ]


def checkpoint_and_back(hosts, names: list[str], lab_host: dict, restart: bool) -> list[list]:
    from tests.lab_tools import restart_lxd

    saved, drawn = run(hosts[0], "checkpoint", names)
    how = "no LXD restart"
    if restart:
        down, how = restart_lxd(lab_host)
        how = f"LXD restarted ({how}), down {down:.1f} s"
        progress(how)
    back, drawn_back = run(hosts[0], "bring_back", names)
    stopped = {c.instance_name: c for c in saved.children.all()}
    downtimes = [seconds(stopped[c.instance_name].started_at, c.finished_at)
                 for c in back.children.all() if c.instance_name in stopped]  # fmt: skip
    return [
        figures("checkpoint in place", saved, drawn, []),
        figures(f"bring back ({how}); downtime includes it", back, drawn_back, downtimes),
    ]


if __name__ == "__main__":
    main()
