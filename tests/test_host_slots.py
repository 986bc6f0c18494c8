"""Host-level concurrency: at most PANEL_HOST_MAX_OPERATIONS operations run on one host; the
rest wait, pending, and start by themselves (database side; the load test in
tests/test_load_lab.py checks the bound with a real worker and the lab)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from panel.models import Operation
from panel.operations.lifecycle import CLAIMED, HOST_BUSY, NOT_PENDING, claim
from panel.operations.reconciler import reconcile
from panel.operations.runner import run
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def two_per_host(settings):
    settings.HOST_MAX_OPERATIONS = 2


def operation(host, name: str, status: str = "pending", kind: str = "stop", **fields):
    instance = make_instance(host, name=name)
    return Operation.objects.create(
        kind=kind, instance=instance, instance_name=name, source_host=host, status=status, **fields
    )


def test_a_third_operation_on_a_busy_host_waits_and_says_why_then_starts_when_a_slot_frees():
    host = make_host("h1")
    first = operation(host, "c1", status="running")
    operation(host, "c2", status="running")
    waiting = operation(host, "c3")

    assert claim(waiting.pk).verdict == HOST_BUSY
    assert claim(waiting.pk).verdict == HOST_BUSY
    waiting.refresh_from_db()
    assert waiting.status == Operation.Status.PENDING
    assert waiting.progress_text.startswith("Waiting for a free slot: h1 runs 2 (limit 2")
    assert waiting.heartbeat_at is not None
    assert waiting.events.filter(stage="waiting for host").count() == 1  # said once, not per try

    Operation.objects.filter(pk=first.pk).update(status=Operation.Status.SUCCEEDED)
    assert claim(waiting.pk).verdict == CLAIMED
    waiting.refresh_from_db()
    assert waiting.status == Operation.Status.RUNNING and waiting.progress_text == ""
    assert claim(waiting.pk).verdict == NOT_PENDING


def test_other_hosts_are_not_slowed_by_a_busy_one():
    busy, idle = make_host("h1"), make_host("h2")
    operation(busy, "c1", status="running")
    operation(busy, "c2", status="running")
    assert claim(operation(idle, "c3").pk).verdict == CLAIMED


def test_a_migration_takes_a_slot_on_its_target_host_too():
    source, target = make_host("h1"), make_host("h2")
    operation(source, "c1", status="running", kind="migrate", target_host=target)
    operation(target, "c2", status="running")
    waiting = operation(target, "c3")
    assert claim(waiting.pk).verdict == HOST_BUSY
    waiting.refresh_from_db()
    assert "h2 runs 2" in waiting.progress_text


def test_a_preflight_check_neither_waits_for_nor_takes_a_slot():
    host = make_host("h1")
    operation(host, "c1", status="running")
    operation(host, "c2", status="running", kind="preflight")
    assert claim(operation(host, "c3", kind="preflight").pk).verdict == CLAIMED
    assert claim(operation(host, "c4").pk).verdict == CLAIMED  # preflights did not count


class SentAgain:
    """Records what the runner asks Celery to do, instead of sending it."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple, dict]] = []

    def apply_async(self, args, **options) -> None:
        self.calls.append((args, options))


def test_the_runner_sends_a_waiting_operation_again_and_does_no_work(settings):
    settings.HOST_SLOT_RETRY_SECONDS = 3
    host = make_host("h1")
    operation(host, "c1", status="running")
    operation(host, "c2", status="running")
    waiting = operation(host, "c3")
    task, worked = SentAgain(), []

    assert run(waiting.pk, worked.append, task) is None
    assert worked == []
    assert task.calls == [((waiting.pk,), {"countdown": 3})]


def test_the_reconciler_leaves_a_waiting_operation_alone_but_not_a_forgotten_one():
    host = make_host("h1")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    waiting = operation(host, "c1", queued_at=long_ago, heartbeat_at=timezone.now())
    forgotten = operation(host, "c2", queued_at=long_ago, heartbeat_at=long_ago)

    assert reconcile() == []
    waiting.refresh_from_db(), forgotten.refresh_from_db()
    assert "requeued" not in waiting.params
    assert forgotten.params["requeued"] and forgotten.heartbeat_at is None


def test_the_operation_page_says_it_waits_for_a_slot_and_not_for_a_worker(viewer_client):
    host = make_host("h1")
    operation(host, "c1", status="running")
    operation(host, "c2", status="running")
    waiting = operation(host, "c3")
    claim(waiting.pk)

    page = viewer_client.get(f"/operations/{waiting.pk}/").content.decode()
    assert "Waiting for a free slot: h1 runs 2 (limit 2 per host); it starts by itself." in page
    assert "waiting for a free slot on its host" in page
    assert "LXD: Waiting" not in page  # the panel's words, not LXD's


def test_first_come_first_served_when_a_slot_frees():
    host = make_host("h1")
    operation(host, "c1", status="running")
    earlier = timezone.now() - dt.timedelta(seconds=5)
    first = operation(host, "c2", queued_at=earlier, stage="waiting for host",
                      heartbeat_at=timezone.now())  # fmt: skip
    later = operation(host, "c3")

    assert claim(later.pk).verdict == HOST_BUSY  # a slot is free, but #first was first
    later.refresh_from_db()
    assert f"operation #{first.pk}, asked earlier for the same host, goes first" in (
        later.progress_text
    )
    assert claim(first.pk).verdict == CLAIMED


def test_a_waiter_whose_worker_stopped_looking_does_not_block_the_queue():
    host = make_host("h1")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    operation(host, "c1", queued_at=long_ago, stage="waiting for host", heartbeat_at=long_ago)
    assert claim(operation(host, "c2").pk).verdict == CLAIMED


def test_a_waiter_behind_long_operations_that_still_report_is_not_forgotten():
    host = make_host("h1")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    operation(host, "c1", status="running", heartbeat_at=timezone.now())
    waiting = operation(host, "c2", queued_at=long_ago, stage="waiting for host",
                        heartbeat_at=long_ago)  # fmt: skip

    assert reconcile() == []
    waiting.refresh_from_db()
    assert "requeued" not in waiting.params  # no worker process was free: it just waits
