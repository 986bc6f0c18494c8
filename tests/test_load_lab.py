"""Load (issue 8): 50 operations asked at once across the lab's containers, through the web, run
by a real worker against both real LXD hosts. Every one must end, with the outcome LXD
confirms; no host may ever run more than PANEL_HOST_MAX_OPERATIONS at once; and the web,
served by gunicorn, is timed while they run. The figures it prints are in docs/operations.md.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from django.test import Client

from panel.hosts.inventory import sync
from panel.models import Host, Instance, Operation
from tests.conftest import wait_for
from tests.lab_tools import enroll, launch_counter, lxc, unique_name

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

PER_HOST = 25
# What each kind must leave behind, checked on LXD itself afterwards.
KINDS = ["stateful_snapshot", "snapshot", "stateful_stop", "restart", "stop"]
EXPECTED_STATUS = {"stateful_snapshot": "Running", "snapshot": "Running", "restart": "Running",
                   "stateful_stop": "Stopped", "stop": "Stopped"}  # fmt: skip


@pytest.fixture
def containers(lab):
    """PER_HOST running counter containers on each lab host, removed afterwards."""
    made = [
        (lab_host, unique_name("load")) for lab_host in lab["hosts"][:2] for _ in range(PER_HOST)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda pair: launch_counter(lab, *pair), made))
    try:
        yield made
    finally:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda pair: lxc(pair[0], "delete", "--force", pair[1], check=False),
                          made))  # fmt: skip


class WebProbe(threading.Thread):
    """Times what a user's browser asks for while operations run: the dashboard, the
    operations list and an operation's progress fragment (htmx polls it every second)."""

    def __init__(self, base_url: str, session_cookie: str, progress_path: str) -> None:
        super().__init__(daemon=True)
        self.session = requests.Session()
        self.session.cookies.set("sessionid", session_cookie)
        self.paths = itertools.cycle(["/", "/operations/", progress_path])
        self.base_url, self.stop = base_url, threading.Event()
        self.timings: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            path = next(self.paths)
            started = time.perf_counter()
            try:
                response = self.session.get(self.base_url + path, timeout=30,
                                            headers={"HX-Request": "true"} if "progress" in path
                                            else {}, allow_redirects=False)  # fmt: skip
                ok = response.status_code in (200, 286)
                if not ok:
                    self.failures.append(f"{path}: HTTP {response.status_code}")
            except requests.RequestException as error:
                self.failures.append(f"{path}: {error}")
            self.timings.append(time.perf_counter() - started)
            time.sleep(0.1)

    def figures(self) -> str:
        assert self.timings, "the web probe made no request at all"
        ms = sorted(t * 1000 for t in self.timings)
        p95 = ms[int(len(ms) * 0.95) - 1]
        return (f"{len(ms)} requests, median {statistics.median(ms):.0f} ms, "
                f"p95 {p95:.0f} ms, max {ms[-1]:.0f} ms")  # fmt: skip


def probe_for(seconds: float, panel_url: str, cookie: str, path: str) -> WebProbe:
    probe = WebProbe(panel_url, cookie, path)
    probe.start()
    time.sleep(seconds)
    probe.stop.set()
    probe.join()
    return probe


def most_at_once(operations: list[Operation], host: Host) -> int:
    """The most operations that were running on `host` at the same moment."""
    edges = []
    for operation in operations:
        if host.pk in (operation.source_host_id, operation.target_host_id):
            edges += [(operation.started_at, 1), (operation.finished_at, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_fifty_operations_at_once_all_end_truthfully_within_the_host_limit(
    lab, containers, celery_worker, panel_url, admin_client, admin_user
):
    hosts = {lab_host["name"]: enroll(lab_host) for lab_host in lab["hosts"][:2]}
    for host in hosts.values():
        sync(host)
    browser = Client()
    browser.force_login(admin_user)
    cookie = browser.cookies["sessionid"].value
    first = Instance.objects.get(name=containers[0][1])
    idle = probe_for(5, panel_url, cookie, f"/containers/{first.pk}/")
    print(f"\nweb while idle: {idle.figures()}")

    asked_at = time.monotonic()
    asked = {}
    for (lab_host, name), kind in zip(containers, itertools.cycle(KINDS), strict=False):
        instance = Instance.objects.get(host=hosts[lab_host["name"]], name=name)
        fields = {"snapshot": "load"} if "snapshot" in kind else {}
        response = admin_client.post(
            f"/containers/{instance.pk}/operations/", {"kind": kind, **fields}
        )
        assert response.status_code == 302 and "/operations/" in response["Location"]
        asked[int(response["Location"].split("/")[2])] = (lab_host, name, kind)
    print(f"50 operations asked in {time.monotonic() - asked_at:.1f} s")

    probe = WebProbe(panel_url, cookie, f"/operations/{next(iter(asked))}/progress/")
    probe.start()
    try:
        wait_for(
            lambda: (
                not Operation.objects.filter(pk__in=asked, status__in=Operation.ACTIVE).exists()
            ),
            timeout=600,
            interval=1,
            what="all 50 operations to end",
        )
    finally:
        probe.stop.set()
        probe.join()
    took = time.monotonic() - asked_at
    operations = list(Operation.objects.filter(pk__in=asked))
    print(f"all {len(operations)} ended {took:.1f} s after the first was asked")
    print(f"web while they ran: {probe.figures()}")

    assert not probe.failures, probe.failures[:5]
    assert len(operations) == 50
    failed = [f"#{o.pk} {o.kind}: {o.outcome}" for o in operations if o.status != "succeeded"]
    assert not failed, failed
    for host in hosts.values():
        peak = most_at_once(operations, host)
        print(f"{host.name}: at most {peak} operations at once")
        assert peak <= settings.HOST_MAX_OPERATIONS
    waited = sum(1 for o in operations if o.events.filter(stage="waiting for host").exists())
    print(f"{waited} operations waited for a free slot on their host")
    assert waited > 0, "the host limit was never reached: the load proves nothing about it"

    for lab_host, name, kind in asked.values():  # the truth, from LXD
        state = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}?recursion=1"))
        assert state["status"] == EXPECTED_STATUS[kind], (name, kind, state["status"])
        if kind == "stateful_stop":
            assert state["stateful"], f"{name}: no saved state after a stateful stop"
        if "snapshot" in kind:
            snapshots = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}/snapshots/load"))
            assert snapshots["stateful"] == (kind == "stateful_snapshot"), name
