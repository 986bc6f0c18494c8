"""Live inventory on the lab: containers created, stopped, snapshotted and deleted by hand
with `lxc` show in the panel's rows within moments, through `manage.py watch_events`.

Prints the delays (p50, p95, max) from each `lxc` command's return to the row's change; the
bound asserted is only a functional check (the figure is bench/events_lab.py's)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from panel.models import Instance, Snapshot
from tests.conftest import ROOT, stop_process, wait_for
from tests.helpers import child_database_url
from tests.lab_tools import enroll, launch_counter, lxc, unique_name

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
ROUNDS = 3


@pytest.fixture
def watcher(lab):
    """`manage.py watch_events` on the test database, as bin/panel runs it."""
    env = {**os.environ, "PANEL_DATABASE_URL": child_database_url()}  # SQLite or PostgreSQL
    log_path = Path(settings.DATA_DIR) / "log" / "test-events.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "watch_events"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield log_path
    finally:
        stop_process(process, timeout=20)


def delay_until(condition, what: str) -> float:
    """Seconds from now until `condition()` holds (polled every 20 ms, at most 30 s)."""
    started = time.monotonic()
    wait_for(condition, timeout=30, interval=0.02, what=what)
    return time.monotonic() - started


def one_round(lab: dict, lab_host: dict, rows, delays: dict[str, list[float]]) -> None:
    """Launch, stop, snapshot and delete one container by hand; time each change's row."""
    name = unique_name("ev")
    mine = rows.filter(name=name)
    try:
        launch_counter(lab, lab_host, name)
        running = mine.filter(status="Running", gone_at=None)
        delays["launch"].append(delay_until(running.exists, f"{name} RUNNING"))
        lxc(lab_host, "stop", "--force", name)
        delays["stop"].append(delay_until(
            lambda: mine.filter(status="Stopped").exists(), f"{name} STOPPED"))  # fmt: skip
        lxc(lab_host, "snapshot", name, "by-hand")
        delays["snapshot"].append(delay_until(
            lambda: Snapshot.objects.filter(instance__in=mine, name="by-hand").exists(),
            f"{name}/by-hand"))  # fmt: skip
        lxc(lab_host, "delete", name)
        delays["delete"].append(delay_until(
            lambda: mine.filter(gone_at__isnull=False).exists(), f"{name} gone"))  # fmt: skip
    finally:
        lxc(lab_host, "delete", "--force", name, check=False)


def test_changes_made_with_lxc_reach_the_rows_within_moments(lab, watcher):
    lab_host = lab["hosts"][0]
    host = enroll(lab_host)
    wait_for(lambda: f"following {host.name}'s events" in watcher.read_text(), timeout=30,
             what=f"the watcher to subscribe (log: {watcher})")  # fmt: skip
    delays: dict[str, list[float]] = {"launch": [], "stop": [], "snapshot": [], "delete": []}
    for _ in range(ROUNDS):
        one_round(lab, lab_host, Instance.objects.filter(host=host), delays)
    every = sorted(d for ds in delays.values() for d in ds)
    p95 = every[min(len(every) - 1, round(0.95 * (len(every) - 1)))]
    for action, seen in delays.items():
        print(f"{action:9s} " + " ".join(f"{d:.3f}" for d in seen))
    print(f"event delay over {len(every)} changes: p50 {statistics.median(every):.3f} s, "
          f"p95 {p95:.3f} s, max {every[-1]:.3f} s")  # fmt: skip
    assert p95 < 2.0 * 2, "the rows lag far behind LXD's events"  # functional, not a benchmark
