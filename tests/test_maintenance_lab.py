"""A host's maintenance for real (issue 21): the web client, a real worker, the lab's LXD and
CRIU. A checkpoint in place of five running containers of different workloads survives a
restart of the host's LXD and brings every process back; an evacuation moves five running
containers (and a stopped one) to the other host and home again, every process continuing.
Figures are printed with -s; the 10-container ones come from bench/maintenance.py."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

import pytest
from django.utils.html import escape

from panel.hosts.inventory import sync
from panel.models import Bundle, Instance, MaintenancePlan, Operation
from tests.conftest import wait_for
from tests.lab_tools import (
    instance_status,
    lxc,
    process_alive,
    read_boot_id,
    read_counter,
    read_file,
    restart_lxd,
    running_counters,
    set_criu,
    start_fifo_pair,
    start_loops,
)

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


@dataclass
class Continuity:
    """What must go on in one container: its counter, its boot id, and each extra process
    (its PID, and the file its work shows in)."""

    name: str
    counter: int
    boot: str
    processes: list[tuple[str, str, int]] = field(default_factory=list)  # file, PID, value

    def check(self, lab_host: dict) -> None:
        name = self.name
        assert read_boot_id(lab_host, name) == self.boot, f"{name} booted afresh"
        wait_for(
            lambda: read_counter(lab_host, name) > self.counter,
            timeout=15,
            what=f"{name}'s counter to go on from {self.counter}",
        )
        for progress, pid, value in self.processes:
            assert process_alive(lab_host, name, pid), f"{name}: process {pid} is gone"
            wait_for(
                lambda p=progress, v=value: int(read_file(lab_host, name, p) or 0) > v,
                timeout=15,
                what=f"{name}: {progress} to go on from {value}",
            )


def with_workloads(lab_host: dict, names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Different workloads: the counter alone, several processes, a FIFO pair, both."""
    workloads: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    workloads[names[1]] += start_loops(lab_host, names[1], 3)
    workloads[names[2]] += start_fifo_pair(lab_host, names[2])
    workloads[names[3]] += start_loops(lab_host, names[3], 2) + start_fifo_pair(lab_host, names[3])
    return workloads


def record(lab_host: dict, workloads: dict[str, list[tuple[str, str]]]) -> list[Continuity]:
    """Each container's state once its extra processes have started working."""
    recorded = []
    for name, processes in workloads.items():
        for progress, _ in processes:
            wait_for(
                lambda p=progress, n=name: read_file(lab_host, n, p),
                timeout=15,
                what=f"{name}: {progress} to be written",
            )
        kept = [
            (
                progress,
                read_file(lab_host, name, pid_file),
                int(read_file(lab_host, name, progress)),
            )
            for progress, pid_file in processes
        ]
        recorded.append(
            Continuity(name, read_counter(lab_host, name), read_boot_id(lab_host, name), kept)
        )
    return recorded


def others_on(host, ours: list[str]) -> list[str]:
    """Containers on the shared lab host that are not this test's: left out of its plans."""
    sync(host)
    present = Instance.objects.present().filter(host=host).values_list("name", flat=True)
    return [name for name in present if name not in ours]


def plan_in_browser(client, host, mode: str, policy: str, skip: list[str]) -> MaintenancePlan:
    """Press the host page's plan button; wait for the worker to draw it up; the plan page."""
    data = {"mode": mode, "policy": policy, **{f"skip:{name}": "on" for name in skip}}
    response = client.post(f"/hosts/{host.pk}/maintenance/plan/", data)
    assert response.status_code == 302 and response["Location"].startswith("/maintenance/"), (
        client.get(response["Location"]).content.decode()[:2000]
    )
    pk = int(response["Location"].split("/")[2])
    plan = wait_for(
        lambda: (
            MaintenancePlan.objects.filter(pk=pk)
            .exclude(preflight__status__in=Operation.ACTIVE)
            .first()
        ),
        timeout=120,
        what=f"plan #{pk} to be drawn up",
    )
    assert plan.state == "ready", plan.preflight.outcome
    page = client.get(f"/maintenance/{pk}/").content.decode()
    assert escape(plan.summary) in page and "Confirm and start" in page
    return plan


def ours(plan: MaintenancePlan, names: list[str]) -> list[dict]:
    return [item for item in plan.items if item["name"] in names]


def run_in_browser(client, plan: MaintenancePlan) -> Operation:
    """Confirm the plan; follow the parent operation until its last child has ended."""
    response = client.post(f"/maintenance/{plan.pk}/confirm/")
    assert response.status_code == 302 and response["Location"].startswith("/operations/")
    pk = int(response["Location"].split("/")[2])
    parent = wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first(),
        timeout=300,
        what=f"maintenance #{pk} to end",
    )
    fragment = client.get(f"/operations/{pk}/children/", headers={"HX-Request": "true"})
    assert fragment.status_code == 286  # htmx stops polling
    print(f"\n#{pk} {plan.mode}: {parent.outcome}")
    print(f"  took {parent.duration.total_seconds():.1f} s; {parent.progress_text}")
    return parent


def downtimes(parent: Operation) -> list[float]:
    values = [c.downtime_seconds for c in parent.children.all() if c.downtime_seconds is not None]
    if values:
        print(
            f"  downtime min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
            f"max {max(values):.2f} s"
        )
    return values


def test_a_checkpoint_in_place_survives_an_lxd_restart_and_brings_every_process_back(
    lab, fleet, celery_worker, admin_client
):
    host1, panel_host1 = lab["hosts"][0], fleet[0]
    with running_counters(lab, host1, "keep", 5) as names:
        recorded = record(host1, with_workloads(host1, names))
        others = others_on(panel_host1, names)
        admin_client.post(f"/hosts/{panel_host1.pk}/maintenance/mode/", {"reason": "LXD update"})
        instance = Instance.objects.get(host=panel_host1, name=names[0])
        refused = admin_client.post(
            f"/containers/{instance.pk}/operations/",
            {"kind": "snapshot", "snapshot": "no"},
            follow=True,
        )
        assert "host1 is in maintenance mode, set by ada" in refused.content.decode()

        plan = plan_in_browser(admin_client, panel_host1, "checkpoint", "stop", others)
        assert {item["action"] for item in ours(plan, names)} == {"stateful_stop"}
        checkpoint = run_in_browser(admin_client, plan)
        assert checkpoint.status == Operation.Status.SUCCEEDED, checkpoint.outcome
        for name in names:
            saved = json.loads(lxc(host1, "query", f"/1.0/instances/{name}"))
            assert (saved["status"], saved["stateful"]) == ("Stopped", True), name

        down, how = restart_lxd(host1)
        print(f"  LXD on host1 restarted as a reboot would ({how}): down {down:.1f} s")

        back = plan_in_browser(admin_client, panel_host1, "bring_back", "leave", [])
        assert [item["name"] for item in back.items] == [
            i["name"] for i in reversed(ours(plan, names))
        ]
        assert {item["fate"] for item in back.items} == {
            "started from its saved state (CRIU restores it)"
        }
        brought = run_in_browser(admin_client, back)
        assert brought.status == Operation.Status.SUCCEEDED, brought.outcome
        launched = [child.instance_name for child in brought.children.order_by("pk")]
        assert launched == [item["name"] for item in back.items]  # in the order they started
        for continuity in recorded:
            assert instance_status(host1, continuity.name) == "Running"
            continuity.check(host1)
        admin_client.post(f"/hosts/{panel_host1.pk}/maintenance/mode/clear/")


def test_an_evacuation_moves_every_container_away_and_home_with_every_process_continuing(
    lab, fleet, celery_worker, admin_client
):
    (host1, host2), (panel_host1, panel_host2) = lab["hosts"][:2], fleet
    with running_counters(lab, host1, "away", 6) as names:
        running, stopped = names[:5], names[5]
        lxc(host1, "stop", stopped)
        recorded = record(host1, with_workloads(host1, running))
        admin_client.post(f"/hosts/{panel_host1.pk}/maintenance/mode/", {"reason": "new disks"})

        plan = plan_in_browser(
            admin_client, panel_host1, "evacuate", "stop", others_on(panel_host1, names)
        )
        for item in ours(plan, names):
            assert item["action"] == "migrate" and item["target"] == "host2", item
            if item["name"] == stopped:
                assert item["strategy"] == "stopped"
            else:
                assert item["strategy"] in ("live", "stateful_move"), item
        evacuation = run_in_browser(admin_client, plan)
        assert evacuation.status == Operation.Status.SUCCEEDED, evacuation.outcome
        downtimes(evacuation)
        assert instance_status(host2, stopped) == "Stopped"
        for continuity in recorded:
            assert instance_status(host1, continuity.name) is None
            assert instance_status(host2, continuity.name) == "Running"
            continuity.check(host2)

        recorded = [
            Continuity(
                c.name,
                read_counter(host2, c.name),
                c.boot,
                [(p, pid, int(read_file(host2, c.name, p))) for p, pid, _ in c.processes],
            )
            for c in recorded
        ]
        back = plan_in_browser(admin_client, panel_host1, "bring_back", "leave", [])
        assert {(item["action"], item["target"]) for item in back.items} == {("migrate", "host1")}
        home = run_in_browser(admin_client, back)
        assert home.status == Operation.Status.SUCCEEDED, home.outcome
        downtimes(home)
        assert instance_status(host1, stopped) == "Stopped"
        for continuity in recorded:
            assert instance_status(host2, continuity.name) is None
            assert instance_status(host1, continuity.name) == "Running"
            continuity.check(host1)
        admin_client.post(f"/hosts/{panel_host1.pk}/maintenance/mode/clear/")
        assert panel_host2.maintenance_plans.count() == 0


def test_a_checkpoint_that_fails_leaves_every_container_running_and_says_so_with_one_bundle(
    lab, fleet, celery_worker, admin_client
):
    """Debian's own CRIU fails every dump here (LAB.md): each checkpoint fails, each
    container goes on running, the parent fails naming each one and where it is, and its one
    bundle holds each failed child's."""
    host1, panel_host1 = lab["hosts"][0], fleet[0]
    with running_counters(lab, host1, "fail", 2) as names:
        plan = plan_in_browser(
            admin_client, panel_host1, "checkpoint", "stop", others_on(panel_host1, names)
        )
        before = {name: read_counter(host1, name) for name in names}
        set_criu(host1, "stock")
        try:
            parent = run_in_browser(admin_client, plan)
        finally:
            set_criu(host1, "fixed")
        assert parent.status == Operation.Status.FAILED
        for name in names:
            assert f"{name} (failed): on host1, RUNNING" in parent.outcome
            assert instance_status(host1, name) == "Running"
            wait_for(
                lambda n=name: read_counter(host1, n) > before[n],
                timeout=15,
                what=f"{name}'s counter to go on",
            )
        bundle = wait_for(
            lambda: parent.bundles.filter(automatic=True, status=Bundle.Status.READY).first(),
            timeout=240,
            what="the maintenance's bundle",
        )
        members = {item["name"].split("/")[0] for item in bundle.manifest["items"]}
        assert members == {f"{c.instance_name}-operation-{c.pk}" for c in parent.children.all()}
        assert "snapshot dump failed" in bundle.report or "dump" in bundle.report.lower()
