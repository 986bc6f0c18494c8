"""A maintenance's parent operation and its children, without LXD: the children are real
Operation rows moved through the real lifecycle, as workers move them (claim, finish); what
a child does on LXD is tests/test_maintenance_lab.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from panel.maintenance import parent as maintenance
from panel.maintenance.models import MaintenancePlan
from panel.maintenance.requests import PlanRefused, confirm_plan
from panel.models import AuditEvent, Operation
from panel.operations import lifecycle
from panel.operations.reconciler import reconcile
from panel.operations.requests import Busy, request_operation
from panel.operations.slots import why_it_waits
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db
Status = Operation.Status


def planned(name: str, instance, action: str = "stateful_stop", **fields) -> dict:
    """One item of a plan as the worker leaves it (planning.Item.as_dict())."""
    item = {
        "name": name,
        "instance": instance.pk if instance else None,
        "at": "h1",
        "status": "Running",
        "home": "h1",
        "action": action,
        "fate": f"{action or 'none'}",
        "target": "",
        "strategy": "",
        "strategy_reason": "",
        "expected_downtime": None,
        "expected_basis": "",
        "problems": [],
        "warnings": [],
        "candidates": {},
        "checks": [],
    }
    return {**item, **fields}


def drawn_plan(host, items: list[dict], mode: str = "checkpoint", **fields) -> MaintenancePlan:
    return MaintenancePlan.objects.create(
        host=host, mode=mode, items=items, summary=f"{len(items)} containers", **fields
    )


@pytest.fixture
def five(admin_user):
    """Host h1 with five running containers, and a confirmed checkpoint of all five."""
    host = make_host("h1")
    instances = [make_instance(host, f"c{i}") for i in range(5)]
    plan = drawn_plan(host, [planned(i.name, i) for i in instances])
    parent = confirm_plan(plan, admin_user)
    return host, instances, plan, parent


def children_of(parent: Operation) -> list[Operation]:
    return list(parent.children.order_by("pk"))


def work_on(child: Operation, status: str = Status.SUCCEEDED, **outcome) -> None:
    """What a worker does with a child: claim it, then finish it."""
    assert lifecycle.claim(child.pk).verdict == lifecycle.CLAIMED
    running = Operation.objects.get(pk=child.pk)
    running.container_state_after = outcome.pop("state", "STOPPED with saved state")
    assert lifecycle.finish(running, status, outcome.pop("words", "Done."), **outcome)


def test_a_maintenance_launches_at_most_the_host_limit_of_children_in_plan_order(five, settings):
    settings.HOST_MAX_OPERATIONS = 2
    parent = five[3]
    maintenance.start(parent.pk)
    children = children_of(parent)
    assert [c.instance_name for c in children] == ["c0", "c1"]
    assert {c.kind for c in children} == {Operation.Kind.STATEFUL_STOP}
    assert all(c.status == Status.PENDING and c.parent_id == parent.pk for c in children)
    parent.refresh_from_db()
    assert parent.status == Status.RUNNING and parent.instance is None
    assert parent.progress_text.startswith("0 of 5 done")


def test_the_parent_ends_with_its_last_child_saying_where_each_container_is(five, settings):
    settings.HOST_MAX_OPERATIONS = 2
    _, _, _, parent = five
    maintenance.start(parent.pk)
    for _ in range(3):  # each round: the running children end, the parent launches the next
        for child in parent.children.filter(status=Status.PENDING):
            work_on(child)
        maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.SUCCEEDED, parent.outcome
    assert parent.children.count() == 5
    assert "Checkpointed 5 of 5 containers of h1" in parent.outcome
    assert "bring them back" in parent.outcome
    rows = parent.result["containers"]
    assert [row["where"] for row in rows] == ["on h1, STOPPED with saved state"] * 5
    assert parent.progress_fraction == 1.0


def test_a_failed_child_fails_the_parent_naming_the_container_and_where_it_is(five, settings):
    settings.HOST_MAX_OPERATIONS = 5
    _, _, _, parent = five
    maintenance.start(parent.pk)
    first, *others = children_of(parent)
    work_on(
        first,
        Status.FAILED,
        words="Checkpoint failed. The container is still running.",
        state="RUNNING",
        error="snapshot dump failed",
    )
    maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.RUNNING  # the others still run: it waits for them
    for child in others:
        work_on(child)
    maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.FAILED
    assert "Checkpointed 4 of 5" in parent.outcome
    assert "c0 (failed): on h1, RUNNING" in parent.outcome


def test_cancel_launches_nothing_more_and_cancels_the_queued_children(five, settings):
    settings.HOST_MAX_OPERATIONS = 2
    _, _, _, parent = five
    maintenance.start(parent.pk)
    running, queued = children_of(parent)
    assert lifecycle.claim(running.pk).verdict == lifecycle.CLAIMED
    assert lifecycle.cancel(parent, "ada") == "requested"
    queued.refresh_from_db()
    assert queued.status == Status.CANCELLED and "nothing was done" in queued.outcome
    work_on_claimed = Operation.objects.get(pk=running.pk)
    work_on_claimed.container_state_after = "STOPPED with saved state"
    assert lifecycle.finish(work_on_claimed, Status.SUCCEEDED, "Stopped with its state saved.")
    maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.CANCELLED
    assert parent.children.count() == 2  # nothing launched after the cancel
    assert "Checkpointed 1 of 5" in parent.outcome
    assert "Cancelled before they started, untouched: c1, c2, c3, c4" in parent.outcome


def test_a_container_busy_with_another_operation_is_not_started_and_said(five, settings):
    settings.HOST_MAX_OPERATIONS = 5
    _, instances, _, parent = five
    other = request_operation(instances[2], "snapshot", None, {"snapshot": "mine"})
    maintenance.start(parent.pk)
    assert parent.children.count() == 4
    for child in parent.children.all():
        work_on(child)
    maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.FAILED
    assert "c2 (not started): on h1, RUNNING, untouched" in parent.outcome
    row = next(r for r in parent.result["containers"] if r["name"] == "c2")
    assert f"operation #{other.pk}" in row["outcome"]


def test_the_parent_cannot_end_while_a_child_is_active(five):
    _, _, _, parent = five
    maintenance.start(parent.pk)
    running = Operation.objects.get(pk=parent.pk)
    assert not lifecycle.end_parent(running, Status.SUCCEEDED, "Too early.")
    assert Operation.objects.get(pk=parent.pk).status == Status.RUNNING


def test_one_host_has_one_maintenance_under_way_enforced_by_the_database(five, admin_user):
    host, instances, _, parent = five
    again = drawn_plan(host, [planned("c0", instances[0])])
    with pytest.raises(Busy, match=f"#{parent.pk}"):
        confirm_plan(again, admin_user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Operation.objects.create(kind="maintenance", source_host=host, instance_name="x")


def test_a_plan_is_confirmed_once_and_not_when_stale(five, admin_user):
    host, instances, plan, parent = five
    with pytest.raises(PlanRefused, match=f"confirmed already: operation #{parent.pk}"):
        confirm_plan(plan, admin_user)
    old = drawn_plan(host, [planned("c0", instances[0])])
    MaintenancePlan.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=1)
    )
    old.refresh_from_db()
    with pytest.raises(PlanRefused, match="over 15 minutes old"):
        confirm_plan(old, admin_user)


def test_the_audit_trail_records_the_plan_and_every_child(five, settings):
    settings.HOST_MAX_OPERATIONS = 5
    _, _, plan, parent = five
    confirmed = AuditEvent.objects.get(action="maintenance.confirm")
    assert confirmed.object_id == str(parent.pk) and f"plan #{plan.pk}" in confirmed.detail
    assert "c3: stateful_stop" in confirmed.detail and confirmed.username == "ada"
    maintenance.start(parent.pk)
    children = AuditEvent.objects.filter(action="maintenance.child")
    assert sorted(int(e.object_id) for e in children) == [c.pk for c in children_of(parent)]
    assert all(f"child of maintenance #{parent.pk}" in e.detail for e in children)


def test_a_maintenance_takes_no_host_slot_and_its_children_do(five, settings):
    settings.HOST_MAX_OPERATIONS = 1
    _, _, _, parent = five
    maintenance.start(parent.pk)
    (child,) = children_of(parent)
    assert why_it_waits(child) == ""  # the running parent does not count against h1


def test_the_reconciler_moves_a_silent_parent_on_instead_of_ending_it(five, settings):
    _, _, _, parent = five
    maintenance.start(parent.pk)
    later = timezone.now() + dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS + 5)
    assert parent.pk not in reconcile(now=later)
    assert Operation.objects.get(pk=parent.pk).status == Status.RUNNING


def test_a_silent_plan_worker_is_ended_saying_nothing_was_done(admin_user, settings):
    from panel.maintenance.requests import request_plan

    host = make_host("h1")
    plan = request_plan(host, "checkpoint", admin_user, "stop", {})
    assert lifecycle.claim(plan.preflight_id).verdict == lifecycle.CLAIMED
    later = timezone.now() + dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS + 5)
    assert reconcile(now=later) == [plan.preflight_id]
    plan.refresh_from_db()
    assert plan.state == "failed"
    assert "Nothing was done to any container" in plan.preflight.outcome


def test_a_failed_maintenance_has_one_bundle_holding_each_failed_childs(five, settings):
    """The children's own bundles are built by panel/bundles (tests/test_bundles.py); here
    one is a real tarball as pack.build_tarball makes it, the other is still missing."""
    import io
    import tarfile

    from django.core.files.base import ContentFile

    from panel.bundles import pack
    from panel.maintenance import bundle
    from panel.models import Bundle

    settings.HOST_MAX_OPERATIONS = 5
    _, _, _, parent = five
    maintenance.start(parent.pk)
    first, second, *others = children_of(parent)
    for child in (first, second):
        work_on(
            child,
            Status.FAILED,
            words="Checkpoint failed; still running.",
            state="RUNNING",
            error="snapshot dump failed",
        )
    for child in others:
        work_on(child)
    maintenance.advance(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Status.FAILED
    assert not bundle.collect(parent.pk)  # the children's bundles are not there yet
    items = [pack.Item("host1/c0/lxc-info.yaml", "h1", "LXD API", b"status: Running\n")]
    data = pack.build_tarball("lxd-bundle-9", "# c0\n", {"items": []}, items, 0)
    own = Bundle.objects.create(
        operation=first, instance_name="c0", automatic=True, status=Bundle.Status.READY
    )
    own.file.save("lxd-bundle-9.tar.gz", ContentFile(data))
    Bundle.objects.create(
        operation=second,
        instance_name="c1",
        automatic=True,
        status=Bundle.Status.FAILED,
        error="agent silent",
    )
    assert bundle.collect(parent.pk)
    made = parent.bundles.get(automatic=True)
    assert made.status == Bundle.Status.READY, made.error
    assert "c0 (failed): on h1, RUNNING" in made.report and "snapshot dump failed" in made.report
    with tarfile.open(fileobj=io.BytesIO(made.file.read()), mode="r:gz") as tar:
        names = tar.getnames()
    folder = f"lxd-bundle-{made.pk}"
    assert f"{folder}/c0-operation-{first.pk}/host1/c0/lxc-info.yaml" in names
    assert f"{folder}/c0-operation-{first.pk}/report.md" in names
    missing = [i for i in made.manifest["items"] if i["status"] == "missing"]
    assert (
        missing[0]["name"] == f"c1-operation-{second.pk}/"
        and "agent silent" in missing[0]["reason"]
    )


def test_a_bring_back_counts_each_containers_downtime_from_its_checkpoint(
    five, admin_user, settings
):
    settings.HOST_MAX_OPERATIONS = 5
    host, instances, plan, parent = five
    maintenance.start(parent.pk)
    for child in children_of(parent):
        work_on(child)
    maintenance.advance(parent.pk)
    back = drawn_plan(
        host, [planned(i.name, i, "start") for i in instances], "bring_back", reverses=plan
    )
    returning = confirm_plan(back, admin_user)
    maintenance.start(returning.pk)
    for child in children_of(returning):
        work_on(child, state="RUNNING")
    maintenance.advance(returning.pk)
    returning.refresh_from_db()
    assert returning.status == Status.SUCCEEDED
    assert "Brought back 5 of 5" in returning.outcome
    stopped = {c.instance_name: c.started_at for c in children_of(parent)}
    for child, row in zip(children_of(returning), returning.result["containers"], strict=True):
        expected = (child.finished_at - stopped[child.instance_name]).total_seconds()
        assert row["downtime"] == pytest.approx(expected, abs=0.01) and row["downtime"] > 0
    assert "median" in returning.progress_text
