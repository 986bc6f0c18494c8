"""Scheduled stateful snapshots: each run is an ordinary Operation, with retention."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from panel.models import Operation, SnapshotSchedule
from panel.operations.schedules import run_due_schedules
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def schedule_for(instance, minutes_ago: int = 1, **fields) -> SnapshotSchedule:
    fields.setdefault("every_minutes", 60)
    fields.setdefault("keep", 2)
    return SnapshotSchedule.objects.create(
        instance=instance, next_run_at=timezone.now() - dt.timedelta(minutes=minutes_ago), **fields
    )


def test_an_operator_schedules_and_sees_the_next_run(operator_client):
    instance = make_instance(make_host())
    operator_client.post(f"/containers/{instance.pk}/schedule/", {"every_minutes": 30, "keep": 5})
    schedule = SnapshotSchedule.objects.get()
    assert (schedule.every_minutes, schedule.keep) == (30, 5)
    assert timezone.now() < schedule.next_run_at <= timezone.now() + dt.timedelta(minutes=30)
    page = operator_client.get(f"/containers/{instance.pk}/?tab=snapshots").content.decode()
    assert "Every <strong>30 min</strong>" in page and "Next run:" in page


@pytest.mark.parametrize(("every", "keep"), [(1, 5), (0, 5), (60, 0), (60, 1000), ("x", 1)])
def test_bad_schedules_are_refused(operator_client, every, keep):
    instance = make_instance(make_host())
    response = operator_client.post(
        f"/containers/{instance.pk}/schedule/", {"every_minutes": every, "keep": keep}, follow=True
    )
    assert b"Schedule not saved" in response.content
    assert not SnapshotSchedule.objects.exists()


def test_a_host_that_cannot_checkpoint_gets_no_schedule(operator_client):
    host = make_host(facts={"server": "lxd", "server_version": "6.6", "driver": "lxc"})
    instance = make_instance(host)
    operator_client.post(f"/containers/{instance.pk}/schedule/", {"every_minutes": 30, "keep": 5})
    assert not SnapshotSchedule.objects.exists()


def test_viewers_cannot_schedule(viewer_client):
    instance = make_instance(make_host())
    response = viewer_client.post(
        f"/containers/{instance.pk}/schedule/", {"every_minutes": 30, "keep": 5}
    )
    assert response.status_code == 403


def test_a_due_schedule_queues_one_ordinary_operation_and_moves_on():
    instance = make_instance(make_host())
    schedule = schedule_for(instance, minutes_ago=150)
    assert run_due_schedules() == 1
    operation = Operation.objects.get()
    assert operation.kind == Operation.Kind.STATEFUL_SNAPSHOT
    assert operation.params["snapshot"].startswith("auto-") and operation.params["keep"] == 2
    schedule.refresh_from_db()
    assert schedule.last_operation == operation
    assert timezone.now() < schedule.next_run_at <= timezone.now() + dt.timedelta(minutes=60)
    assert run_due_schedules() == 0  # missed runs are skipped, not piled up


def test_a_busy_or_stopped_container_skips_the_run_and_says_why():
    busy = make_instance(make_host("h1"), "busy")
    Operation.objects.create(kind="stop", instance=busy, instance_name="busy", status="running")
    stopped = make_instance(make_host("h2"), "stopped", status="Stopped")
    schedule_for(busy)
    schedule_for(stopped)
    assert run_due_schedules() == 0
    notes = dict(SnapshotSchedule.objects.values_list("instance__name", "last_note"))
    assert "busy: operation #" in notes["busy"]
    assert "STOPPED, not RUNNING" in notes["stopped"]
