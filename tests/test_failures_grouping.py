"""Grouping failed operations (panel/failures/grouping.py) from the lab's real failure texts:
one group per cause across hosts, reopening a fixed group, an ignored group staying quiet,
the lifecycle grouping each failure as it ends, and who hears of it. Database only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from panel.failures.grouping import group_failure, group_of, is_new_group, is_quiet
from panel.models import FailureGroup, Operation
from panel.operations import lifecycle, runner
from tests.helpers import make_host, make_instance
from tests.test_failures import fixture

pytestmark = pytest.mark.django_db
Status = FailureGroup.Status


def failed(name: str, host=None, minutes_ago: float = 0, **fields) -> Operation:
    """An ended operation as the panel recorded the lab's failure `name`."""
    found = fixture(name)
    host = host or make_host(found["hosts"][0]["name"])
    recorded = {"kind": found["kind"], "status": found["status"], "error": found["error"],
                "outcome": found["outcome"], **fields}  # fmt: skip
    operation = Operation.objects.create(
        instance=make_instance(host, f"c{Operation.objects.count()}"), instance_name="c",
        source_host=host, finished_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
        **recorded,
    )  # fmt: skip
    for stage in found["stages"]:
        operation.log("(as recorded)", stage)
    return operation


def test_the_same_failure_on_two_hosts_joins_one_group_counting_both():
    first = group_failure(failed("dump-host1", minutes_ago=5).pk)
    second = group_failure(failed("dump-host2").pk)
    assert first is not None and second is not None
    group = FailureGroup.objects.get()
    assert first.group == second.group == group
    assert (group.count, sorted(group.hosts), group.status) == (2, ["host1", "host2"], Status.NEW)
    assert group.platforms == ["LXD 5.0.2"] and group.hosts["host1"]["count"] == 1
    assert group.first_seen == first.operation.finished_at < group.last_seen
    assert group.last_seen == second.operation.finished_at
    assert group.title == (
        "Stateful snapshot failed while checkpointing: vdso: Unexpected rt vDSO area bounds"
    )
    assert (first.opened, second.opened) == ("new", "")
    assert is_new_group(first.operation) and not is_new_group(second.operation)


def test_another_cause_is_another_group_and_grouping_twice_changes_nothing():
    host = make_host("host1")
    dump = failed("dump-host1", host)
    restore = failed("restore-host1", host)
    assert group_failure(dump.pk).group != group_failure(restore.pk).group
    assert group_failure(dump.pk).group.count == 1  # the same operation is not counted again
    succeeded = Operation.objects.create(kind="stop", instance_name="c", status="succeeded")
    assert group_failure(succeeded.pk) is None and group_of(succeeded) is None


def test_a_fixed_group_failing_again_is_reopened_as_a_regression():
    group = group_failure(failed("dump-host1", minutes_ago=10).pk).group
    FailureGroup.objects.filter(pk=group.pk).update(
        status=Status.FIXED, upstream_url="https://github.com/checkpoint-restore/criu/issues/1"
    )
    again = group_failure(failed("dump-host2").pk)
    group.refresh_from_db()
    assert (group.status, again.opened) == (Status.FILED, "regressed")  # its bug is still filed
    assert group.status_by is None and "failed again on host2" in group.status_reason
    assert is_new_group(again.operation)


def test_an_ignored_group_keeps_counting_quietly():
    group = group_failure(failed("dump-host1", minutes_ago=1).pk).group
    FailureGroup.objects.filter(pk=group.pk).update(status=Status.IGNORED)
    again = group_failure(failed("dump-host2").pk)
    group.refresh_from_db()
    assert (group.status, group.count, again.opened) == (Status.IGNORED, 2, "")
    assert not is_new_group(again.operation)
    assert is_quiet(again.operation)  # nobody is told of it (tests/test_notify.py)


def test_a_failure_ending_through_the_lifecycle_is_grouped_before_its_bundle_is_asked_for(
    django_capture_on_commit_callbacks,
):
    instance = make_instance(make_host("host1"))
    operation = lifecycle.request(instance, "stateful_snapshot", None, {"snapshot": "s1"})
    lifecycle.claim(operation.pk)
    operation = Operation.objects.get(pk=operation.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        lifecycle.finish(operation, "failed", "Checkpoint failed.", fixture("dump-host1")["error"])
    assert getattr(callbacks[0], "func", None) is group_failure  # first of the after-commit work
    callbacks[0]()
    assert group_of(operation).signature["criu"].startswith("Error (criu/vdso.c)")


def test_the_panels_own_failures_are_the_panels_and_lxds_refusals_lxds():
    host = make_host("host1")
    lost = group_failure(failed("lxd-unreachable", host).pk).group
    crashed = failed("lxd-unreachable", host, outcome=runner.CRASHED, error="KeyError: 'x'")
    never = group_failure(failed("never-started", host).pk).group
    refused = failed("lxd-unreachable", host, outcome=runner.REFUSED, error="Instance is busy")
    assert (lost.component, never.component) == ("panel", "panel")
    assert group_failure(crashed.pk).group.component == "panel"
    assert group_failure(refused.pk).group.component == "lxd"
    incus = make_host("incus1", facts={"server": "incus", "server_version": "6.0.4"})
    busy = failed("lxd-unreachable", incus, outcome=runner.REFUSED, error="Instance is busy")
    group = group_failure(busy.pk).group
    assert group.component == "incus" and group.platforms == ["Incus 6.0.4"]
    assert group.signature["versions"] == "incus 6.0.4"
