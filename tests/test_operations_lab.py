"""Every container operation end to end: the web client, a real worker, the lab's real LXD
and CRIU. Counter values are printed; a real restore keeps the boot id."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape

from panel.hosts.inventory import sync
from panel.models import Instance, Operation, PanelSnapshot, SnapshotSchedule
from panel.operations.schedules import run_due_schedules
from tests.conftest import SESSION_WORKER, wait_for
from tests.lab_tools import (
    enroll,
    instance_status,
    lxc,
    read_boot_id,
    read_counter,
    running_counter,
    set_criu,
)
from workers.celery import app as celery_app

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def lab_host(lab) -> dict:
    return lab["hosts"][0]


@pytest.fixture
def counter(lab, lab_host):
    """A running counter container on host1, known to the panel; deleted afterwards."""
    with running_counter(lab, lab_host, "ops") as name:
        host = enroll(lab_host)
        yield Instance.objects.get(host=host, name=name)


def operate(client, instance: Instance, kind: str, **fields) -> Operation:
    """Press the button, follow the operation page until it ends, return the row."""
    response = client.post(f"/containers/{instance.pk}/operations/", {"kind": kind, **fields})
    assert response.status_code == 302, response.content
    assert response["Location"].startswith("/operations/"), messages_of(client, instance)
    pk = int(response["Location"].split("/")[2])
    page = client.get(f"/operations/{pk}/").content.decode()
    assert f"#{pk}" in page
    operation = wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first(),
        timeout=240,
        what=f"operation #{pk} ({kind}) to end",
    )
    fragment = client.get(f"/operations/{pk}/progress/", headers={"HX-Request": "true"})
    assert fragment.status_code == 286  # htmx stops polling
    assert escape(operation.outcome) in fragment.content.decode()
    return operation


def messages_of(client, instance: Instance) -> str:
    return client.get(f"/containers/{instance.pk}/").content.decode()


def refreshed(instance: Instance) -> Instance:
    sync(instance.host)
    return Instance.objects.get(pk=instance.pk)


def test_a_stateful_snapshot_then_its_restore_continue_the_counter(
    celery_worker, admin_client, counter, lab_host
):
    boot = read_boot_id(lab_host, counter.name)
    before = read_counter(lab_host, counter.name)
    operation = operate(admin_client, counter, "stateful_snapshot", snapshot="second")
    after = read_counter(lab_host, counter.name)
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert "Stateful snapshot 'second' taken" in operation.outcome
    assert refreshed(counter).snapshots.get(name="second").stateful

    later = wait_for(lambda: (n := read_counter(lab_host, counter.name)) >= after + 4 and n,
                     timeout=30, what="the counter to move on")  # fmt: skip
    operation = operate(
        admin_client, counter, "restore", snapshot="second", restore_mode="stateful"
    )
    restored = read_counter(lab_host, counter.name)
    print(f"checkpoint between {before} and {after}, later {later}, after restore {restored}")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert before <= restored <= after + 2 and restored < later
    assert read_boot_id(lab_host, counter.name) == boot
    assert instance_status(lab_host, counter.name) == "Running"
    stages = list(operation.events.values_list("stage", flat=True))
    assert "restoring" in stages and "verifying" in stages


def test_a_stateful_stop_then_start_restores_the_saved_state(
    celery_worker, admin_client, counter, lab_host
):
    boot = read_boot_id(lab_host, counter.name)
    operation = operate(admin_client, counter, "stateful_stop")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    stopped_at = read_counter(lab_host, counter.name)
    counter = refreshed(counter)
    assert (counter.status, counter.stateful) == ("Stopped", True)
    assert b"Start (restores the saved state)" in admin_client.get(
        f"/containers/{counter.pk}/").content  # fmt: skip

    time.sleep(3)
    operation = operate(admin_client, counter, "start")
    resumed = read_counter(lab_host, counter.name)
    print(f"counter at stateful stop {stopped_at}, after start {resumed}")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert "restored from its saved state" in operation.outcome
    assert stopped_at <= resumed <= stopped_at + 2
    assert read_boot_id(lab_host, counter.name) == boot


def test_plain_snapshot_stop_filesystem_restore_start_restart_and_delete(
    celery_worker, admin_client, counter, lab_host
):
    steps = [
        ("snapshot", {"snapshot": "fs1"}, "Snapshot 'fs1' taken"),
        ("stop", {}, "STOPPED"),
        ("restore", {"snapshot": "fs1"}, "filesystem only"),
        ("start", {}, "RUNNING"),
        ("restart", {}, "RUNNING"),
        ("delete_snapshot", {"snapshot": "fs1"}, "Snapshot 'fs1' deleted"),
    ]
    for kind, fields, words in steps:
        counter = refreshed(counter)
        operation = operate(admin_client, counter, kind, **fields)
        assert operation.status == Operation.Status.SUCCEEDED, (kind, operation.error)
        assert words in operation.outcome, (kind, operation.outcome)
    assert instance_status(lab_host, counter.name) == "Running"
    assert not refreshed(counter).snapshots.exists()


def test_a_dump_failure_says_the_container_is_still_running(
    celery_worker, admin_client, counter, lab_host
):
    set_criu(lab_host, "stock")
    operation = operate(admin_client, counter, "stateful_snapshot", snapshot="doomed")
    print(f"outcome: {operation.outcome}\nLXD: {operation.error[:300]}")
    assert operation.status == Operation.Status.FAILED
    assert operation.outcome.startswith("Checkpoint failed. The container is still running")
    assert "dump" in operation.error.lower()
    assert "From CRIU's log:\nsnapshot_dump_" in operation.error  # CRIU's own words, fetched
    assert "Error (criu/" in operation.error
    assert operation.container_state_after == "RUNNING"
    assert instance_status(lab_host, counter.name) == "Running"
    page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "The error as LXD gave it" in page


def test_a_restore_failure_leaves_it_stopped_and_the_offered_recovery_starts_it(
    celery_worker, admin_client, counter, lab_host
):
    assert (
        operate(admin_client, counter, "stateful_snapshot", snapshot="good").status == "succeeded"
    )
    set_criu(lab_host, "stock")
    counter = refreshed(counter)
    operation = operate(admin_client, counter, "restore", snapshot="good", restore_mode="stateful")
    print(f"outcome: {operation.outcome}\nLXD: {operation.error[:300]}")
    assert operation.status == Operation.Status.FAILED
    assert "The container is STOPPED. Start it (it boots afresh)" in operation.outcome
    assert instance_status(lab_host, counter.name) == "Stopped"
    page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "Start the container" in page and "Retry the restore of good" in page

    set_criu(lab_host, "fixed")
    recovery = operate(admin_client, refreshed(counter), "start")
    assert recovery.status == Operation.Status.SUCCEEDED, recovery.error
    assert instance_status(lab_host, counter.name) == "Running"


def test_a_second_request_on_a_busy_container_is_refused_with_a_link(
    celery_worker, admin_client, counter
):
    first = admin_client.post(f"/containers/{counter.pk}/operations/", {"kind": "stateful_stop"})
    first_pk = int(first["Location"].split("/")[2])
    second = admin_client.post(
        f"/containers/{counter.pk}/operations/", {"kind": "stateful_snapshot"}, follow=True
    )
    page = second.content.decode()
    assert f"busy: operation #{first_pk} (stateful stop) is" in page
    assert f'href="/operations/{first_pk}/"' in page
    assert Operation.objects.filter(instance=counter).count() == 1
    wait_for(lambda: not Operation.objects.get(pk=first_pk).is_active, timeout=120, what="stop")


def test_a_queued_operation_can_be_cancelled_and_never_runs(
    celery_worker, admin_client, counter, lab_host
):
    name = SESSION_WORKER  # not an agent: they are Celery workers on this broker too
    celery_app.control.cancel_consumer("panel", destination=[name], reply=True)
    try:
        response = admin_client.post(f"/containers/{counter.pk}/operations/", {"kind": "stop"})
        pk = int(response["Location"].split("/")[2])
        assert Operation.objects.get(pk=pk).status == Operation.Status.PENDING
        admin_client.post(f"/operations/{pk}/cancel/")
    finally:
        celery_app.control.add_consumer("panel", destination=[name], reply=True)
    time.sleep(3)  # the queued task is delivered now, and must find nothing to do
    operation = Operation.objects.get(pk=pk)
    assert operation.status == Operation.Status.CANCELLED
    assert operation.started_at is None
    assert instance_status(lab_host, counter.name) == "Running"


def test_scheduled_stateful_snapshots_are_operations_that_keep_the_newest(
    celery_worker, counter, lab_host
):
    # Made by hand, older and named like the schedule's: pruning must never take it.
    lxc(lab_host, "snapshot", counter.name, "auto-00000000-000000")
    schedule = SnapshotSchedule.objects.create(
        instance=counter, every_minutes=60, keep=2, next_run_at=timezone.now()
    )
    for _ in range(3):
        SnapshotSchedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now())
        with transaction.atomic():
            assert run_due_schedules() == 1
        schedule.refresh_from_db()
        operation = wait_for(
            lambda: Operation.objects.exclude(status__in=Operation.ACTIVE)
            .filter(pk=schedule.last_operation_id).first(),
            timeout=120, what="the scheduled snapshot",
        )  # fmt: skip
        assert operation.status == Operation.Status.SUCCEEDED, operation.error
        time.sleep(1.1)  # snapshot names carry the second they were taken
    print(f"last scheduled run: {operation.outcome}")
    assert "Deleted 1 older scheduled snapshot" in operation.outcome
    snapshots = refreshed(counter).snapshots.all()
    assert [s.name for s in snapshots] == sorted(s.name for s in snapshots)
    hand_made, *scheduled = snapshots
    assert hand_made.name == "auto-00000000-000000" and not hand_made.stateful
    assert len(scheduled) == 2 and all(s.stateful and s.name.startswith("auto-") for s in scheduled)
    recorded = PanelSnapshot.objects.filter(instance=counter, scheduled=True)
    assert sorted(recorded.values_list("name", flat=True)) == [s.name for s in scheduled]
