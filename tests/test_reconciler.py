"""The reconciler ends stale operations truthfully (database side; the lab test kills a
real worker in the middle of a live migration)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from panel.models import Operation
from panel.operations.reconciler import reconcile, verdict
from panel.operations.requests import Busy, request_operation
from tests.helpers import make_host, make_instance

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


@pytest.mark.django_db(transaction=True)
def test_the_same_operation_asked_twice_at_the_same_instant_runs_exactly_once(operator_user):
    """Two requests racing past the 'is it busy?' check: the database lets one in."""
    instance = make_instance(make_host())
    barrier, answers = threading.Barrier(2), []

    def ask() -> None:
        barrier.wait()
        try:
            answers.append(request_operation(instance, "stop", operator_user).pk)
        except Busy as busy:
            answers.append(str(busy))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    created = list(Operation.objects.values_list("pk", flat=True))
    assert len(created) == 1
    assert sorted(type(answer).__name__ for answer in answers) == ["int", "str"]
    assert any(f"busy: operation #{created[0]} (stop)" in str(answer) for answer in answers)
