"""The reconciler ends stale operations truthfully (database side; the lab test kills a
real worker in the middle of a live migration)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from panel.models import Operation
from tests.helpers import make_host, make_instance
from workers.reconciler import reconcile, verdict

pytestmark = pytest.mark.django_db


def later(seconds: int = 3600) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def test_an_operation_no_worker_started_is_queued_once_more_then_ended_saying_nothing_was_done():
    instance = make_instance(make_host())
    operation = Operation.objects.create(
        kind="stop", instance=instance, instance_name="c1", source_host=instance.host
    )
    assert reconcile(now=later()) == []
    operation.refresh_from_db()
    assert operation.status == Operation.Status.PENDING and operation.params["requeued"]
    assert reconcile(now=later(7200)) == [operation.pk]
    operation.refresh_from_db()
    assert operation.status == Operation.Status.INTERRUPTED
    assert "Nothing was done to the container" in operation.outcome
    assert "queued again" in " ".join(operation.events.values_list("message", flat=True))


def test_fresh_operations_are_left_alone():
    instance = make_instance(make_host())
    Operation.objects.create(
        kind="stop",
        instance=instance,
        instance_name="c1",
        source_host=instance.host,
        status="running",
        heartbeat_at=timezone.now(),
    )
    assert reconcile() == []


def where(source=None, target=None) -> dict:
    return {"source": source, "target": target, "summary": "as seen"}


def container(status: str, snapshots=(), stateful=False) -> dict:
    return {"status": status, "stateful": stateful, "snapshots": list(snapshots)}


def test_verdicts_succeed_only_when_the_container_is_as_promised():
    host = make_host("h1")
    stop = Operation(kind="stop", source_host=host, instance_name="c1")
    assert verdict(stop, where(container("Stopped")))[0] == Operation.Status.SUCCEEDED
    assert verdict(stop, where(container("Running")))[0] == Operation.Status.INTERRUPTED
    snap = Operation(kind="stateful_snapshot", source_host=host, params={"snapshot": "s1"})
    taken = container("Running", [{"name": "s1", "stateful": True}])
    assert verdict(snap, where(taken))[0] == Operation.Status.SUCCEEDED
    assert verdict(snap, where(container("Running")))[0] == Operation.Status.INTERRUPTED


def test_a_migration_lxd_finished_alone_is_interrupted_and_says_where_the_container_is():
    h1, h2 = make_host("h1"), make_host("h2")
    migrate = Operation(kind="migrate", source_host=h1, target_host=h2, params={"strategy": "live"})
    status, words = verdict(migrate, where(container("Stopped"), container("Running")))
    assert status == Operation.Status.INTERRUPTED
    assert "on h2 (RUNNING)" in words and "left behind on the source host" in words
