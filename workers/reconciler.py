"""The reconciler: no operation stays "running" or "pending" forever.

Beat runs it every minute. It looks for
- running operations whose worker stopped reporting (no heartbeat for a while: the worker
  died, was killed, or its machine went away), and
- pending operations nobody picked up (the queue lost them, e.g. Redis restarted without them).
For each it asks LXD what really happened, and ends the operation with the truth: succeeded
when LXD finished the work and the container is where it should be, interrupted otherwise,
always saying where the container is and in which state.

A worker's claim is a conditional UPDATE (workers/runner.py), and so is the reconciler's end of
an operation: if the worker comes back, one of them wins and the other does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from panel import lxd
from panel.models import Operation
from workers.celery import app
from workers.hosts import sync_host, target_for
from workers.runner import WAITING_FOR_HOST, slot_hosts

logger = logging.getLogger(__name__)


def reconcile(now: dt.datetime | None = None) -> list[int]:
    """End or re-queue every stale operation; returns the ids it ended."""
    now = now or timezone.now()
    silent = now - dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS)
    ended = []
    running = Operation.objects.filter(status=Operation.Status.RUNNING, heartbeat_at__lt=silent)
    for operation in running.select_related("source_host", "target_host", "instance"):
        if settle_silent_operation(operation):
            ended.append(operation.pk)
    # A pending operation waiting for a host slot is seen again every second or so by a
    # worker (heartbeat_at); only one nobody has seen for the whole period is forgotten.
    forgotten = Operation.objects.filter(status=Operation.Status.PENDING).filter(
        Q(heartbeat_at__isnull=True, queued_at__lt=silent) | Q(heartbeat_at__lt=silent)
    )
    for operation in forgotten.select_related("source_host", "target_host"):
        if waits_behind_live_work(operation, silent):
            continue  # its job waits behind long operations that are still reporting
        if settle_forgotten_operation(operation):
            ended.append(operation.pk)
    return ended


def settle_silent_operation(operation: Operation) -> bool:
    """The worker stopped reporting. While LXD is still working on it, leave it (and say so);
    once LXD is done, find out where the container is and end the operation with that."""
    try:
        still_running = lxd_still_working(operation)
        where = container_whereabouts(operation)
    except lxd.LXDError as error:
        return end(
            operation,
            Operation.Status.INTERRUPTED,
            "The worker running this operation stopped reporting, and LXD could not be "
            f"asked what happened ({error}). The container was left as LXD has it; check "
            "its page, and its host.",
            "unknown: a host did not answer",
        )
    if still_running:
        Operation.objects.filter(pk=operation.pk).update(heartbeat_at=timezone.now())
        operation.log(
            "The worker stopped reporting; LXD is still working on it: waiting.", "reconciling"
        )
        return False
    status, words = verdict(operation, where)
    return end(operation, status, words, where["summary"])


def waits_behind_live_work(operation: Operation, silent: dt.datetime) -> bool:
    """A pending operation waiting for a host slot, on a host whose running operations still
    report: its re-sent job may simply wait for a free worker process. Not forgotten."""
    if operation.stage != WAITING_FOR_HOST:
        return False
    hosts = [host.pk for host in slot_hosts(operation)]
    return (
        Operation.objects.filter(status=Operation.Status.RUNNING, heartbeat_at__gte=silent)
        .filter(Q(source_host_id__in=hosts) | Q(target_host_id__in=hosts))
        .exists()
    )


def settle_forgotten_operation(operation: Operation) -> bool:
    """Queued but never started. Send it once more (the claim makes a duplicate harmless);
    if it is still not started a whole period later, end it: nothing was done."""
    if not operation.params.get("requeued"):
        params = {**operation.params, "requeued": timezone.now().isoformat()}
        Operation.objects.filter(pk=operation.pk).update(
            params=params, queued_at=timezone.now(), heartbeat_at=None
        )
        operation.log("No worker started this operation: it was queued again.", "reconciling")
        enqueue(operation)
        return False
    return end(
        operation,
        Operation.Status.INTERRUPTED,
        "No worker started this operation, even after it was queued again (are the "
        "workers running? `manage.py doctor` says). Nothing was done to the container: "
        "ask again when workers are back.",
        "untouched",
    )


def enqueue(operation: Operation) -> None:
    from panel.operations import MIGRATION_KINDS
    from workers.migrations import run_migration_operation
    from workers.operations import run_operation

    task = run_migration_operation if operation.kind in MIGRATION_KINDS else run_operation
    task.delay(operation.pk)


def lxd_still_working(operation: Operation) -> bool:
    """Is any LXD operation this panel operation started still running, on either host?"""
    hosts = [h for h in (operation.source_host, operation.target_host) if h is not None]
    for operation_id in operation.lxd_operation_ids:
        for host in hosts:
            state = lxd.operation_state(target_for(host), operation_id)
            if state is not None and not state.finished:
                return True
    return False


def container_whereabouts(operation: Operation) -> dict:
    """Where the container is now: its status on the source (and the target) host."""
    source = lxd.instance_summary(target_for(operation.source_host), operation.instance_name)
    target = None
    if operation.target_host is not None:
        name = operation.target_name or operation.instance_name
        target = lxd.instance_summary(target_for(operation.target_host), name)
    parts = [f"{operation.source_host.name}: {describe(source)}"]
    if operation.target_host is not None:
        parts.append(f"{operation.target_host.name}: {describe(target)}")
    return {"source": source, "target": target, "summary": "; ".join(parts)}


def describe(summary: dict | None) -> str:
    if summary is None:
        return "not there"
    return summary["status"].upper() + (" with saved state" if summary["stateful"] else "")


def verdict(operation: Operation, where: dict) -> tuple[str, str]:
    """Succeeded only when the container is in the state the operation promised."""
    source, target = where["source"], where["target"]
    lead = "The worker running this operation stopped reporting; LXD finished on its own. "
    promised = {
        Operation.Kind.START: "Running",
        Operation.Kind.START_FRESH: "Running",
        Operation.Kind.RESTART: "Running",
        Operation.Kind.STOP: "Stopped",
        Operation.Kind.STATEFUL_STOP: "Stopped",
    }.get(operation.kind)
    if operation.kind == Operation.Kind.MIGRATE:
        moved = target is not None and (
            target["status"] == "Running" or operation.params.get("strategy") == "stopped"
        )
        if moved:
            left = (
                " A stopped copy was left behind on the source host: remove it below."
                if source
                else ""
            )
            return Operation.Status.INTERRUPTED, (
                f"{lead}The container is on {operation.target_host.name} "
                f"({describe(target)}), but the panel did not verify it or clean up.{left}"
            )
        return (
            Operation.Status.INTERRUPTED,
            f"{lead}The migration did not complete: {where['summary']}.",
        )
    if operation.kind in (Operation.Kind.SNAPSHOT, Operation.Kind.STATEFUL_SNAPSHOT):
        name = operation.params.get("snapshot", "")
        taken = [s for s in (source or {}).get("snapshots", []) if s["name"] == name]
        stateful = operation.kind == Operation.Kind.STATEFUL_SNAPSHOT
        if taken and (taken[0]["stateful"] or not stateful):
            return (
                Operation.Status.SUCCEEDED,
                f"{lead}Snapshot {name!r} exists; {where['summary']}.",
            )
        return (
            Operation.Status.INTERRUPTED,
            f"{lead}Snapshot {name!r} was not taken; {where['summary']}.",
        )
    if promised and source is not None and source["status"] == promised:
        return Operation.Status.SUCCEEDED, f"{lead}The container is {describe(source)}, as asked."
    return Operation.Status.INTERRUPTED, f"{lead}Check the result: {where['summary']}."


def end(operation: Operation, status: str, words: str, state_after: str) -> bool:
    """End the operation unless a worker finished it meanwhile (conditional UPDATE)."""
    ended = Operation.objects.filter(pk=operation.pk, status__in=Operation.ACTIVE).update(
        status=status,
        outcome=words,
        container_state_after=state_after[:200],
        finished_at=timezone.now(),
        stage=status,
        may_cancel=False,
    )
    if not ended:
        return False
    operation.log(f"Reconciled: {words}", "reconciling")
    if status == Operation.Status.INTERRUPTED:
        from workers.bundles import collect_operation_bundle

        collect_operation_bundle.delay(operation.pk)
    for host_id in {operation.source_host_id, operation.target_host_id} - {None}:
        sync_host.delay(host_id)
    logger.warning("reconciled operation %s: %s", operation.pk, words)
    return True


@app.task
def reconcile_task() -> None:
    reconcile()
