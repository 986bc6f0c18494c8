"""The late-worker race, with real processes: a Celery worker running a stateful snapshot is
frozen (SIGSTOP) while LXD works on; the reconciler, in this test's process, ends the
operation from what LXD says; a second operation runs on the container; then the first
worker is let go (SIGCONT). It must change nothing and make no further LXD call: the
reconciler's verdict stays, and the second operation is untouched."""

from __future__ import annotations

import os
import signal

import pytest

from panel.hosts.inventory import sync
from panel.models import Instance, Operation
from panel.operations.reconciler import lxd_still_working, reconcile
from tests.conftest import session_worker_paused, start_celery_worker, wait_for
from tests.lab_tools import instance_status, running_counter, start_memory_churn
from tests.test_faults_lab import after_silence, ask, ended, lxd_operation_started, snapshot_of

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

VERDICT_FIELDS = ("status", "outcome", "error", "container_state_after", "finished_at", "stage")


def test_a_worker_that_comes_back_after_the_reconciler_ended_its_operation_changes_nothing(
    lab, fleet, celery_worker, admin_client
):
    host1 = lab["hosts"][0]
    with running_counter(lab, host1, "late-worker") as name:
        start_memory_churn(host1, name, megabytes=100)  # a dump that lasts a few seconds
        sync(fleet[0])
        instance = Instance.objects.get(host=fleet[0], name=name)
        with session_worker_paused():
            late = start_celery_worker(f"late-{os.getpid()}@localhost")
            first = ask(admin_client, instance, "stateful_snapshot", snapshot="cut")
            lxd_operation_started(first)
            os.killpg(late.pid, signal.SIGSTOP)  # the worker is gone, as far as anyone sees
        try:
            operation = Operation.objects.get(pk=first)
            wait_for(lambda: not lxd_still_working(operation), timeout=120, what="LXD to finish")
            assert reconcile(now=after_silence()) == [first]
            verdict = Operation.objects.values(*VERDICT_FIELDS).get(pk=first)
            assert verdict["status"] == Operation.Status.SUCCEEDED, verdict["outcome"]
            events_then = Operation.objects.get(pk=first).events.count()

            second = ask(admin_client, instance, "snapshot", snapshot="after")  # session worker
            wait_for(
                lambda: Operation.objects.get(pk=second).status != Operation.Status.PENDING,
                timeout=60,
                what="the second operation to start",
            )
            os.killpg(late.pid, signal.SIGCONT)  # the late worker comes back now
            came_back = wait_for(
                lambda: (
                    Operation.objects.get(pk=first)
                    .events.filter(message__contains="came back after the operation was ended")
                    .first()
                ),
                timeout=120,
                what="the late worker to notice it no longer owns the operation",
            )
            assert came_back is not None
            assert ended(second).status == Operation.Status.SUCCEEDED
        finally:
            os.killpg(late.pid, signal.SIGCONT)
            os.killpg(late.pid, signal.SIGKILL)
            late.wait(timeout=30)

        assert Operation.objects.values(*VERDICT_FIELDS).get(pk=first) == verdict
        later = Operation.objects.get(pk=first).events.order_by("at", "pk")[events_then:]
        assert [event.message for event in later] == [came_back.message]  # nothing else
        taken = snapshot_of(host1, name, "cut")
        assert taken is not None and taken["stateful"]
        assert snapshot_of(host1, name, "after") is not None
        assert instance_status(host1, name) == "Running"
