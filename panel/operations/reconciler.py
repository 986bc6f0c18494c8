"""The reconciler: no operation stays "running" or "pending" forever.

Beat runs it every minute. It looks for
- running operations whose worker stopped reporting (no heartbeat for a while: the worker
  died, was killed, or its machine went away), and
- pending operations nobody picked up (the queue lost them, e.g. Redis restarted without them).
For each it asks LXD what really happened, and ends the operation with the truth: succeeded
when LXD finished the work and the container is where it should be, interrupted otherwise,
always saying where the container is and in which state.

A worker's claim is a conditional UPDATE, and so is the reconciler's end of an operation
(panel/operations/lifecycle.py): if the worker comes back, one of them wins and the other does
nothing; a worker that finds its operation ended stops before its next LXD call.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from panel import broker, lxd
from panel.hosts.connection import target_for
from panel.operations import aftercare, lifecycle, settle
from panel.operations.models import Operation
from panel.operations.requests import send
from panel.operations.runner import Tracker
from panel.operations.slots import WAITING_FOR_HOST, slot_hosts

logger = logging.getLogger(__name__)


def reconcile(now: dt.datetime | None = None) -> list[int]:
    """End or re-queue every stale operation; returns the ids it ended."""
    now = now or timezone.now()
    silent = now - dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS)
    ended = []
    running = Operation.objects.filter(status=Operation.Status.RUNNING, heartbeat_at__lt=silent)
    # A maintenance has no worker of its own: its children's ends move it on. One that has
    # not moved for a while (a lost job) is moved on again; it ends with its last child.
    for parent in running.filter(kind=Operation.Kind.MAINTENANCE).values_list("pk", flat=True):
        broker.send_on_commit(lifecycle.ADVANCE_MAINTENANCE, parent)
    running = running.exclude(kind=Operation.Kind.MAINTENANCE)
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
    try:
        aftercare.run_all()
    except Exception:  # the aftercare must never stop the reconciler's own round
        logger.exception("the aftercare round failed")
    return ended


def settle_silent_operation(operation: Operation) -> bool:
    """The worker stopped reporting. While LXD is still working on it, leave it (and say so),
    for at most the operation timeout; then find out where the container is and end the
    operation with that. A host that does not answer is said to, never guessed about."""
    if operation.kind == Operation.Kind.MAINTENANCE_PLAN:
        return lifecycle.end_by_reconciler(
            operation,
            Operation.Status.INTERRUPTED,
            "The worker drawing up this maintenance plan stopped reporting. Nothing was done "
            "to any container: ask for the plan again.",
            "untouched",
        )
    if operation.kind == Operation.Kind.MIGRATE:
        return settle_silent_migration(operation)
    try:
        still_running = lxd_still_working(operation)
    except lxd.LXDUnreachable:
        still_running = False  # the whereabouts say which host does not answer
    if still_running and not overdue(operation):
        lifecycle.note_reconciling(
            operation, "The worker stopped reporting; LXD is still working on it: waiting."
        )
        return False
    where = container_whereabouts(operation)
    if where["unknown"]:
        aftercare.add(operation, operation.known_source_host(), operation.instance_name,
                      aftercare.HOME)  # fmt: skip
        words = (
            f"The worker running this operation stopped reporting, and {where['summary']}. "
            "The panel asks again every minute and writes what it finds here."
        )
        status: str = Operation.Status.INTERRUPTED
    else:
        status, words = verdict(operation, where)
        if still_running:
            words = f"LXD's operation still ran after {overdue_words()}: stopped waiting. {words}"
    return lifecycle.end_by_reconciler(operation, status, words, where["summary"])


def overdue(operation: Operation) -> bool:
    """Waiting for LXD is bounded too: an LXD operation that runs longer than the operation
    timeout (plus the silence that let the reconciler in) is not waited for any more."""
    limit = settings.OPERATION_TIMEOUT_SECONDS + settings.RECONCILE_SILENT_SECONDS
    started = operation.started_at or operation.queued_at
    return timezone.now() - started > dt.timedelta(seconds=limit)


def overdue_words() -> str:
    return f"{settings.OPERATION_TIMEOUT_SECONDS + settings.RECONCILE_SILENT_SECONDS} s"


def settle_silent_migration(operation: Operation) -> bool:
    """A migration whose worker went silent. The reconciler takes the operation over (the
    worker, should it come back, finds its claim gone and stops before its next LXD call),
    waits while LXD really works on it, and otherwise settles it as the worker would have:
    one home for the container, a stuck dump freed, the stray copy removed (settle.py)."""
    if not lifecycle.take_over(operation):
        return False
    source = Tracker(operation)
    target = Tracker(operation, host=operation.known_target_host())
    if lxd_work_left(operation, source, target) == RUNNING and not overdue(operation):
        lifecycle.note_reconciling(
            operation, "The worker stopped reporting; LXD is still working on it: waiting."
        )
        return False
    sides = settle.Sides.of_operation(source, target)
    lead = "The worker running this migration stopped reporting"
    home, seen_source, seen_target = settle.after_fault(sides, lead, "", operation.stage)
    if home == settle.HOME_TARGET and seen_target.answered:
        summary = f"{seen_source.describe()}; {seen_target.describe()}"
        where = {"source": seen_source.summary, "target": seen_target.summary, "summary": summary}
        status, words = verdict(operation, where)
        return lifecycle.end_by_reconciler(operation, status, words, summary)
    if home == settle.HOME_TARGET:
        failure = settle.seen_running_words(sides, seen_source)
    else:
        failure = settle.keep_at_source(sides, lead, "", seen_source, seen_target)
    return lifecycle.end_by_reconciler(
        operation, Operation.Status.INTERRUPTED, failure.outcome, failure.state_after
    )


RUNNING, STUCK, DONE = "running", "stuck", "done"


def lxd_work_left(operation: Operation, source: Tracker, target: Tracker) -> str:
    """Whether LXD still works on the migration: its operations still run on both sides,
    or on the target. An operation left running on one side while the other does not answer,
    or while the target's side has ended, is stuck (a dump waiting for a restore that will
    never come): not waited for."""
    running, silent = set(), set()
    for tracker in (source, target):
        for operation_id in operation.lxd_operation_ids:
            try:
                state = lxd.operation_state(tracker.target, operation_id)
            except lxd.LXDUnreachable:
                silent.add(tracker.host.pk)
                break
            if state is not None and not state.finished:
                running.add(tracker.host.pk)
    if not running:
        return DONE
    if silent or target.host.pk not in running:
        return STUCK
    return RUNNING


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
        if lifecycle.requeue(operation):
            send(operation)
        return False
    return lifecycle.end_by_reconciler(
        operation,
        Operation.Status.INTERRUPTED,
        "No worker started this operation, even after it was queued again (are the "
        "workers running? `manage.py doctor` says). Nothing was done to the container: "
        "ask again when workers are back.",
        "untouched",
    )


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
    """Where the container is now: its status on the source (and the target) host, each
    remembered for its row; a host that does not answer is named as such (`unknown`)."""
    sides = [(operation.known_source_host(), operation.instance_name)]
    if operation.target_host is not None:
        sides.append((operation.target_host, operation.target_name or operation.instance_name))
    found: list[dict | None] = []
    parts: list[str] = []
    unknown: list[str] = []
    for host, name in sides:
        read_at = timezone.now()
        try:
            summary = lxd.instance_summary(target_for(host), name)
        except lxd.LXDUnreachable as error:
            found.append(None)
            unknown.append(host.name)
            parts.append(f"{host.name}: unknown (its LXD does not answer: {error})")
            continue
        operation.observe(host.pk, name, summary, read_at)
        found.append(summary)
        parts.append(f"{host.name}: {describe(summary)}")
    found.append(None)
    return {"source": found[0], "target": found[1], "summary": "; ".join(parts),
            "unknown": unknown}  # fmt: skip


def describe(summary: dict | None) -> str:
    if summary is None:
        return "not there"
    return summary["status"].upper() + (" with saved state" if summary["stateful"] else "")


SILENT_WORKER = "The worker running this operation stopped reporting; LXD finished on its own. "


def verdict(operation: Operation, where: dict, lead: str = SILENT_WORKER) -> tuple[str, str]:
    """Succeeded only when the container is in the state the operation promised."""
    source, target = where["source"], where["target"]
    promises: dict[str, str] = {
        Operation.Kind.START: "Running",
        Operation.Kind.START_FRESH: "Running",
        Operation.Kind.RESTART: "Running",
        Operation.Kind.STOP: "Stopped",
        Operation.Kind.STATEFUL_STOP: "Stopped",
    }
    promised = promises.get(operation.kind)
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
                f"{lead}The container is on {operation.known_target_host().name} "
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
