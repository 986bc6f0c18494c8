"""The plan's rules, pure (panel/maintenance/planning.py): what happens to each container,
where it goes, how, with which expected downtime, and why not. What the worker gathers for
them from real hosts is tests/test_maintenance_lab.py; the downtime history is the
database's (panel/maintenance/history.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from panel.hosts.risks import PASSTHROUGH, Risk
from panel.maintenance import history
from panel.maintenance.planning import (
    Away,
    Candidate,
    Subject,
    checkpoint_blockers,
    plan_bring_back,
    plan_checkpoint,
    plan_evacuation,
    summarise,
)
from panel.operations.preflight import Side
from tests.helpers import make_host
from tests.test_migration import succeeded_migration

FACTS = {
    "server": "lxd",
    "server_version": "5.0.2",
    "driver": "lxc",
    "kernel_version": "6.18.4",
    "architectures": ["x86_64"],
    "storage_pools": ["default"],
    "profiles": ["default"],
    "networks": [],
    "cpu_flags": ["sse2"],
}
DEFINITION = {
    "architecture": "x86_64",
    "profiles": ["default"],
    "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
}
GIB = 2**30
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def side(name: str, **facts) -> Side:
    return Side(name, True, True, "", {**FACTS, **facts})


def subject(name: str, started: int = 0, status: str = "Running", **fields) -> Subject:
    fields.setdefault(
        "strategies", {"h2": ("stateful_move", "Measured."), "h3": ("stateful_move", "Measured.")}
    )
    return Subject(
        name,
        instance=started + 1,
        status=status,
        definition=DEFINITION,
        started_at=T0 + dt.timedelta(minutes=started),
        **fields,
    )


def candidate(name: str, free_gib: float | None = 8, **fields) -> Candidate:
    free = int(free_gib * GIB) if free_gib is not None else None
    fields.setdefault("expected", {"stateful_move": (1.5, "median of 4"), "stopped": (0.0, "")})
    return Candidate(side(name, **fields.pop("facts", {})), free_memory=free, **fields)


def by_name(items) -> dict:
    return {item.name: item for item in items}


def test_a_checkpoint_stops_every_running_container_statefully_last_started_first():
    items = plan_checkpoint(
        [subject("a", 0), subject("b", 5), subject("c", 2)],
        "h1",
        "",
        "stop",
        set(),
        (2.1, "checkpoint 1.0 s + restore 1.1 s"),
    )
    assert [item.name for item in items] == ["b", "c", "a"]
    assert {item.action for item in items} == {"stateful_stop"}
    assert items[0].expected_downtime == 2.1 and "restore" in items[0].expected_basis
    assert summarise(items, "checkpoint") == "3 containers: 3 checkpointed."


def test_what_cannot_be_checkpointed_is_stopped_cleanly_or_left_running_as_chosen():
    nic = {"eth0": {"type": "nic", "nictype": "physical"}}
    blocked = subject("phys", blockers=checkpoint_blockers("container", {}, nic, "lxd"))
    assert "liblxc refuses to dump NICs" in blocked.blockers[0]
    stopped = plan_checkpoint([blocked], "h1", "", "stop", set())[0]
    assert stopped.action == "stop" and stopped.fate.startswith("stopped cleanly on h1")
    left = plan_checkpoint([blocked], "h1", "", "leave", set())[0]
    assert left.action == "" and left.fate.startswith("left running on h1")
    nothing = plan_checkpoint([subject("a")], "h1", "h1 cannot checkpoint: LXD 6.6", "leave", set())
    assert nothing[0].problems == ["h1 cannot checkpoint: LXD 6.6"]
    assert (
        summarise(nothing, "checkpoint")
        == "1 containers: 1 left as they are; 1 cannot be checkpointed."
    )


def test_risks_are_warnings_and_skips_and_stopped_ones_are_left_alone():
    risky = subject("gpu", risks=[Risk("device gpu0 (gpu)", PASSTHROUGH)])
    items = by_name(
        plan_checkpoint(
            [risky, subject("off", status="Stopped", stateful=True), subject("mine")],
            "h1",
            "",
            "stop",
            {"mine"},
        )
    )
    assert items["gpu"].action == "stateful_stop" and "passthrough" in items["gpu"].warnings[0]
    assert items["off"].fate == "already STOPPED with its saved state: stays as it is"
    assert items["mine"].action == "" and items["mine"].fate == "skipped by the admin's choice"


def test_virtual_machines_and_incus_containers_without_migration_stateful_are_not_checkpointed():
    assert "virtual machine" in checkpoint_blockers("virtual-machine", {}, {}, "lxd")[0]
    assert "migration.stateful=true" in checkpoint_blockers("container", {}, {}, "incus")[0]
    assert checkpoint_blockers("container", {"migration.stateful": "true"}, {}, "incus") == []


def test_an_evacuation_sends_each_container_where_the_most_memory_is_left_free():
    subjects = [subject(f"c{i}", i, memory=3 * GIB) for i in range(3)]
    items = plan_evacuation(
        subjects, side("h1"), [candidate("h2", 8), candidate("h3", 5)], "stop", {}, set()
    )
    assert [(item.name, item.target) for item in items] == [
        ("c2", "h2"),
        ("c1", "h3"),
        ("c0", "h2"),
    ]
    assert all(item.action == "migrate" and item.strategy == "stateful_move" for item in items)
    assert items[0].expected_downtime == 1.5 and items[0].fate == (
        "moves to h2: checkpoint, move, restore"
    )
    too_big = plan_evacuation(
        [subject("big", memory=9 * GIB)], side("h1"), [candidate("h2", 8)], "leave", {}, set()
    )[0]
    assert too_big.action == "" and "not enough free memory" in too_big.candidates["h2"]
    assert too_big.fate == "left running on h1: no other host can take it"


def test_a_host_in_maintenance_or_unreachable_takes_nothing_and_the_plan_says_why():
    away = Candidate(Side("h3", False, False, "connection refused", {}))
    closed = candidate("h2", closed="h2 is in maintenance mode, set by ada")
    item = plan_evacuation([subject("c")], side("h1"), [closed, away], "stop", {}, set())[0]
    assert item.candidates["h2"] == "h2 is in maintenance mode, set by ada"
    assert "connection refused" in item.candidates["h3"]
    assert item.action == "stop" and item.problems


def test_a_running_container_that_cannot_move_statefully_follows_the_policy():
    old_kernel = candidate("h2", facts={"kernel_version": "5.15.0"})
    cold = plan_evacuation([subject("c")], side("h1"), [old_kernel], "cold", {}, set())[0]
    assert cold.action == "migrate" and cold.strategy == "cold"
    assert cold.fate == "moves to h2: stop, move, start (its processes restart)"
    assert "moved cold, as chosen" in cold.strategy_reason
    stop = plan_evacuation([subject("c")], side("h1"), [old_kernel], "stop", {}, set())[0]
    assert stop.action == "stop" and "syscalls" in stop.candidates["h2"]
    no_criu = subject("c", strategies={"h2": ("cold", "One of the hosts cannot checkpoint.")})
    left = plan_evacuation([no_criu], side("h1"), [candidate("h2")], "leave", {}, set())[0]
    assert left.action == "" and "cannot checkpoint" in left.candidates["h2"]


def test_the_admins_target_is_taken_or_the_plan_says_why_not():
    hosts = [candidate("h2", 8), candidate("h3", 1)]
    chosen = plan_evacuation(
        [subject("c", memory=GIB // 2)], side("h1"), hosts, "stop", {"c": "h3"}, set()
    )[0]
    assert chosen.target == "h3"
    refused = plan_evacuation(
        [subject("c", memory=2 * GIB)], side("h1"), hosts, "stop", {"c": "h3"}, set()
    )[0]
    assert refused.action == "stop" and refused.problems[0].startswith("It cannot move to h3")


def test_stopped_containers_move_as_they_are_and_not_across_lxd_and_incus_with_their_state():
    stopped = plan_evacuation(
        [subject("off", status="Stopped", memory=99 * GIB)],
        side("h1"),
        [candidate("h2", 1)],
        "stop",
        {},
        set(),
    )[0]
    assert (stopped.action, stopped.strategy, stopped.expected_downtime) == (
        "migrate",
        "stopped",
        0.0,
    )
    incus = candidate("h2", facts={"server": "incus"})
    across = plan_evacuation([subject("c")], side("h1"), [incus], "stop", {}, set())[0]
    assert across.action == "stop" and "not proven" in across.candidates["h2"]


def test_bring_back_starts_at_home_and_moves_home_in_the_order_they_were_started():
    earlier = [
        {"name": "late", "at": "h1", "target": "h2", "action": "migrate"},
        {"name": "early", "at": "h1", "target": "", "action": "stateful_stop"},
    ]
    away = [
        Away(earlier[0], subject("late", strategies={"h1": ("live", "Measured.")}), "h2"),
        Away(earlier[1], subject("early", status="Stopped", stateful=True), "h1"),
    ]
    home = candidate("h1", expected={"live": (0.7, "median of 2")})
    items = plan_bring_back(away, home, {"h2": side("h2")}, "leave", set(), (0.4, "median"))
    assert [item.name for item in items] == ["early", "late"]
    assert items[0].action == "start" and items[0].fate.startswith("started from its saved state")
    assert (items[1].action, items[1].target, items[1].strategy) == ("migrate", "h1", "live")


def test_bring_back_leaves_a_container_whose_home_still_has_a_copy_and_says_why():
    earlier = {"name": "c", "at": "h1", "target": "h2", "action": "migrate"}
    home = candidate("h1", taken={"c"})
    item = plan_bring_back(
        [Away(earlier, subject("c", strategies={"h1": ("live", "")}), "h2")],
        home,
        {"h2": side("h2")},
        "leave",
        set(),
    )[0]
    assert item.action == "" and item.fate == "stays RUNNING on h2: it cannot move home"
    assert "already has an instance named 'c'" in item.problems[0]
    gone = plan_bring_back([Away(earlier, None, "")], home, {}, "leave", set())[0]
    assert gone.fate == "nothing to bring back: the container is gone"


@pytest.mark.django_db
def test_expected_downtime_comes_from_this_pair_else_from_other_hosts():
    h1, h2, h3 = make_host("h1"), make_host("h2"), make_host("h3")
    for seconds in (1.0, 2.0, 4.0):
        succeeded_migration(h1, h2, seconds, {"strategy": "stateful_move"})
    succeeded_migration(h3, h2, 9.0, {"strategy": "live"})
    expected = history.migration_downtimes(h1, h2)
    assert expected["stateful_move"] == (
        2.0,
        "median of 3 migrations by checkpoint, move, restore from h1 to h2",
    )
    assert expected["live"] == (9.0, "median of 1 migration by live migration between other hosts")
    assert expected["cold"][0] is None and expected["stopped"][0] == 0.0
    assert history.checkpoint_downtime(h1)[0] is None
