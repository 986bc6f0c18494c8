"""Every change of an Operation's status, in one place (netbox's Job.start/terminate).

Each transition is one conditional UPDATE from the statuses it may start from, and says
whether it won: a redelivered job, a worker that comes back late, the reconciler and a user's
cancel can race, and exactly one of them changes the row. A worker's own transitions also
name its claim (the token written when it took the operation), so a worker whose operation
the reconciler has ended finds its claim gone: it changes nothing and stops, and the Tracker
stops it talking to LXD (runner.OperationLost).

    request            (new)              -> pending
    claim              pending            -> running, or stays pending waiting for a slot
    requeue            pending            -> pending (the reconciler sends a lost job again)
    enter_stage, record_progress, remember_lxd_operation, keep_alive
                       running (own claim) -> running
    finish             running (own claim) -> succeeded / failed / cancelled
    cancel             pending            -> cancelled; running -> running, cancel asked
    end_by_reconciler  pending or running -> succeeded / interrupted
    note_reconciling   running            -> running (LXD still works on it: wait)

A host-level operation (a maintenance, its pre-flight) has no container: request_for_host.
A maintenance is a parent whose children are ordinary operations (Operation.parent); it has
no worker of its own, and its children's ends move it on:
    record_parent_progress  running -> running (n of N, downtime so far)
    end_parent              running -> succeeded / failed / cancelled, only once none of
                            its children is active
    cancel (of a parent)    running -> running, cancel asked, its queued children cancelled

Nothing else writes `status` (tests/test_lifecycle.py reads the code to keep it so).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from panel import broker
from panel.failures import grouping
from panel.hosts.inventory import record_instance
from panel.operations.models import Operation
from panel.operations.slots import WAITING_FOR_HOST, why_it_waits

logger = logging.getLogger(__name__)
Status = Operation.Status
TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.INTERRUPTED, Status.CANCELLED)
COLLECT_OPERATION_BUNDLE = "panel.bundles.tasks.collect_operation_bundle"
NOTIFY_FAILURE = "panel.notify.tasks.notify_failure"
COLLECT_MAINTENANCE_BUNDLE = "panel.maintenance.tasks.collect_maintenance_bundle"
ADVANCE_MAINTENANCE = "panel.maintenance.tasks.advance_maintenance"
SYNC_HOST = "panel.hosts.tasks.sync_host"


class Busy(Exception):
    """The container already has an active operation (or, for a migration, the target is
    already receiving a container of that name: `reason` says so)."""

    def __init__(self, active: Operation | None, reason: str = "") -> None:
        self.active = active
        if active is None:
            super().__init__("busy: another operation on this container has just started")
            return
        since = timezone.localtime(active.started_at or active.queued_at)
        super().__init__(
            f"busy: {reason}operation #{active.pk} ({active.get_kind_display().lower()}) "
            f"is {active.get_status_display().lower()} since {since:%H:%M}"
        )


def request(instance, kind: str, user, params: dict | None = None, **fields) -> Operation:
    """Create the pending Operation, or raise Busy naming the active one.

    The partial unique index `one_active_operation_per_instance` is the real guard: two
    requests racing past the check still cannot both insert.
    """
    try:
        with transaction.atomic():
            active = Operation.objects.active().filter(instance=instance).first()
            if active is not None:
                raise Busy(active)
            if kind == Operation.Kind.MIGRATE and fields.get("target_host") is not None:
                refuse_a_second_arrival(fields["target_host"], fields.get("target_name", ""))
            operation = Operation.objects.create(
                kind=kind,
                instance=instance,
                instance_name=instance.name,
                source_host=instance.host,
                requested_by=user if user and user.is_authenticated else None,
                params=params or {},
                **fields,
            )
            origin = (params or {}).get("aftercare_of")
            asker = f"the panel (aftercare of operation #{origin})" if origin else user
            operation.log(f"Requested by {asker}.", "queued")
    except IntegrityError:
        raise Busy(Operation.objects.active().filter(instance=instance).first()) from None
    return operation


def request_for_host(host, kind: str, user, label: str, params: dict | None = None) -> Operation:
    """Create a pending host-level operation (no container of its own), or raise Busy when
    it is a maintenance and the host already has one under way. The partial unique index
    `one_active_maintenance_per_host` is the real guard, as for containers."""
    under_way = Operation.objects.active().filter(kind=Operation.Kind.MAINTENANCE, source_host=host)
    try:
        with transaction.atomic():
            active = under_way.first() if kind == Operation.Kind.MAINTENANCE else None
            if active is not None:
                raise Busy(active)
            operation = Operation.objects.create(
                kind=kind,
                instance=None,
                instance_name=label[:63],
                source_host=host,
                requested_by=user if user and user.is_authenticated else None,
                params=params or {},
            )
            operation.log(f"Requested by {user}.", "queued")
    except IntegrityError:
        raise Busy(under_way.first()) from None
    return operation


def refuse_a_second_arrival(target, name: str) -> None:
    """Two migrations may not bring a container of the same name to one host, nor one arrive
    while an operation works on a container of that name there. The target's row is locked
    first, so two such requests are serialised (SQLite's IMMEDIATE transactions are anyway)."""
    list(type(target).objects.select_for_update().filter(pk=target.pk))
    arriving = (
        Operation.objects.active()
        .filter(
            Q(kind=Operation.Kind.MIGRATE, target_host=target, target_name=name)
            | Q(source_host=target, instance_name=name)
        )
        .first()
    )
    if arriving is not None:
        raise Busy(arriving, f"{target.name} is already receiving or working on a container "
                   f"named {name!r}: ")  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """What `claim` decided, and the token a worker's later transitions must carry."""

    verdict: str
    token: str = ""


CLAIMED, NOT_PENDING, HOST_BUSY = "claimed", "not pending", "host busy"


def claim(operation_id: int) -> Claim:
    """Mark a pending operation running, unless one of its hosts is already at its limit.

    The hosts' rows are locked while counting (SQLite: the IMMEDIATE transaction serialises
    writers), so two workers can never both take a host's last slot.
    """
    with transaction.atomic():
        pending = Operation.objects.filter(pk=operation_id, status=Status.PENDING)
        operation = pending.select_related("source_host", "target_host").first()
        if operation is None:
            return Claim(NOT_PENDING)
        text = why_it_waits(operation)
        now = timezone.now()
        if text:
            pending.update(stage=WAITING_FOR_HOST, progress_text=text, heartbeat_at=now)
            if operation.stage != WAITING_FOR_HOST:
                operation.log(text, WAITING_FOR_HOST)
            return Claim(HOST_BUSY)
        token = secrets.token_hex(16)
        pending.update(
            status=Status.RUNNING,
            claim_token=token,
            started_at=now,
            heartbeat_at=now,
            stage="starting",
            progress_text="",
        )
        return Claim(CLAIMED, token)


def requeue(operation: Operation) -> bool:
    """The reconciler sends a job nobody started once more (the claim makes a duplicate
    harmless); `params.requeued` remembers that it did."""
    params = {**operation.params, "requeued": timezone.now().isoformat()}
    won = _from(operation, Status.PENDING).update(
        params=params, queued_at=timezone.now(), heartbeat_at=None
    )
    if won:
        operation.params = params
        operation.log("No worker started this operation: it was queued again.", "reconciling")
    return bool(won)


def _from(operation: Operation, *statuses: str) -> QuerySet[Operation]:
    return Operation.objects.filter(pk=operation.pk, status__in=statuses)


def _owned(operation: Operation) -> QuerySet[Operation]:
    """The row, while the worker holding `operation` still owns it."""
    return _from(operation, Status.RUNNING).filter(claim_token=operation.claim_token)


def enter_stage(
    operation: Operation, stage: str, message: str, fraction: float | None = None
) -> bool:
    won = _owned(operation).update(
        stage=stage, progress_text="", progress_fraction=fraction, heartbeat_at=timezone.now()
    )
    if won:
        operation.stage, operation.progress_text, operation.progress_fraction = stage, "", fraction
        operation.log(message, stage)
    return bool(won)


def record_progress(
    operation: Operation, text: str, may_cancel: bool = False, fraction: float | None = None
) -> bool:
    shown = operation.redacted(text)[:500]
    won = _owned(operation).update(
        progress_text=shown,
        progress_fraction=fraction,
        may_cancel=may_cancel,
        heartbeat_at=timezone.now(),
    )
    if won:
        operation.progress_text, operation.progress_fraction = shown, fraction
    return bool(won)


def remember_lxd_operation(operation: Operation, lxd_operation_id: str) -> bool:
    """Keep every LXD operation id on the row: the reconciler and bug reports need them."""
    operation.lxd_operation_ids.append(lxd_operation_id)
    return bool(_owned(operation).update(lxd_operation_ids=operation.lxd_operation_ids))


def keep_alive(operation: Operation) -> bool:
    """A heartbeat between progress reports (a long wait on LXD that reports nothing)."""
    return bool(_owned(operation).update(heartbeat_at=timezone.now()))


def still_owned(operation: Operation) -> bool:
    return _owned(operation).exists()


def cancel_asked(operation: Operation) -> bool | None:
    """Whether the user asked to cancel; None once this worker no longer owns it."""
    return _owned(operation).values_list("cancel_requested", flat=True).first()


def finish(
    operation: Operation, status: str, outcome: str, error: str = "", state_after: str = ""
) -> bool:
    """The worker's end of its operation, with what it measured (`result`, downtime), and
    the container's rows as the work last read them from LXD, in one transaction: a request
    that follows at once (start after a stateful stop) sees the state LXD reported."""
    outcome, error = operation.redacted(outcome), operation.redacted(error)
    operation.container_state_after = state_after or operation.container_state_after
    with transaction.atomic():
        won = _owned(operation).update(
            status=status,
            outcome=_saying_a_late_cancel(outcome) if status == Status.SUCCEEDED else outcome,
            error=error,
            container_state_after=operation.container_state_after[:200],
            finished_at=timezone.now(),
            may_cancel=False,
            stage="done" if status == Status.SUCCEEDED else status,
            result=operation.result,
            downtime_seconds=operation.downtime_seconds,
        )
        if won:
            record_observations(operation)
            if status == Status.SUCCEEDED:  # the UPDATE may have added LATE_CANCEL
                outcome = Operation.objects.values_list("outcome", flat=True).get(pk=operation.pk)
    if not won:
        return False
    operation.status, operation.outcome, operation.error = status, outcome, error
    operation.log(
        f"{operation.get_status_display()}: {outcome}" + (f" LXD: {error}" if error else "")
    )
    _after_end(operation, status)
    return True


LATE_CANCEL = (
    " The cancel asked for came too late: the work was past its last step that can be "
    "cancelled, and it finished."
)


def _saying_a_late_cancel(outcome: str) -> Case:
    """A success whose cancel was asked after the last cancel point says so, decided in the
    UPDATE itself so that a cancel landing at that very moment is not missed."""
    return Case(
        When(cancel_requested=True, then=Value(outcome + LATE_CANCEL)), default=Value(outcome)
    )


def cancel(operation: Operation, user) -> str:
    """Cancel a queued operation, or ask a running one to stop at the next step that allows
    it. Returns "cancelled", "requested" or "ended" (nothing to cancel)."""
    cancelled_while_queued = _from(operation, Status.PENDING).update(
        status=Status.CANCELLED,
        outcome="Cancelled before it started.",
        finished_at=timezone.now(),
        stage=Status.CANCELLED,
    )
    if cancelled_while_queued:
        operation.log(f"Cancelled by {user} before a worker started it.", "cancelled")
        _nudge_parent(operation)
        return "cancelled"
    if _from(operation, Status.RUNNING).update(cancel_requested=True):
        operation.log(f"{user} asked to cancel.")
        if operation.kind == Operation.Kind.MAINTENANCE:
            _cancel_queued_children(operation, user)
            broker.send_on_commit(ADVANCE_MAINTENANCE, operation.pk)
        return "requested"
    return "ended"


def _cancel_queued_children(parent: Operation, user) -> None:
    """A maintenance's cancel launches nothing more: its children still queued (waiting for
    a worker or a host slot) end here; the running ones finish their step safely."""
    for child in Operation.objects.filter(parent=parent, status=Status.PENDING):
        won = _from(child, Status.PENDING).update(
            status=Status.CANCELLED,
            outcome="Cancelled with its maintenance before it started; nothing was done to "
            "the container.",
            finished_at=timezone.now(),
            stage=Status.CANCELLED,
        )
        if won:
            child.log(f"Cancelled by {user} with maintenance #{parent.pk}.", "cancelled")


def record_parent_progress(
    parent: Operation, stage: str, text: str, fraction: float, message: str = ""
) -> bool:
    """A parent's progress (n of N, downtime so far) and its per-container report (`result`);
    it may be cancelled at any time: cancel stops it launching children. `message` goes on
    its timeline when the stage changes."""
    won = _from(parent, Status.RUNNING).update(
        stage=stage,
        progress_text=text[:500],
        progress_fraction=fraction,
        may_cancel=True,
        heartbeat_at=timezone.now(),
        result=parent.result,
    )
    if won and stage != parent.stage:
        parent.stage = stage
        parent.log(message or text, stage)
    return bool(won)


def end_parent(
    parent: Operation, status: str, outcome: str, state_after: str = "", text: str = ""
) -> bool:
    """A parent ends when its last child has ended: one conditional UPDATE from running that
    loses while any of its children is still pending or running. `text`: its last progress
    (n of N, downtime)."""
    children_active = Operation.objects.filter(parent=OuterRef("pk"), status__in=Operation.ACTIVE)
    won = (
        _from(parent, Status.RUNNING)
        .filter(~Exists(children_active))
        .update(
            status=status,
            outcome=outcome,
            container_state_after=state_after[:200],
            finished_at=timezone.now(),
            may_cancel=False,
            stage="done" if status == Status.SUCCEEDED else status,
            progress_text=text[:500],
            progress_fraction=1.0,
            result=parent.result,
        )
    )
    if not won:
        return False
    parent.status, parent.outcome = status, outcome
    parent.log(f"{parent.get_status_display()}: {outcome}")
    _after_end(parent, status)
    return True


def _nudge_parent(operation: Operation) -> None:
    """A child's end moves its parent on (launch the next child, or end)."""
    if operation.parent_id is not None:
        broker.send_on_commit(ADVANCE_MAINTENANCE, operation.parent_id)


def save_result(operation: Operation) -> bool:
    """Keep what the work learnt so far (`result`) where the reconciler can read it, should
    the worker die: a migration's dump operation, the container's init PID."""
    return bool(_owned(operation).update(result=operation.result))


def record_aftercare(operation: Operation) -> None:
    """The aftercare's progress on an ended operation (its `result`; never its status)."""
    Operation.objects.filter(pk=operation.pk).exclude(status__in=Operation.ACTIVE).update(
        result=operation.result
    )


def take_over(operation: Operation) -> bool:
    """The reconciler becomes the owner of a running operation whose worker went silent: a
    new claim, so the old worker's next step or LXD request stops it, and the reconciler's
    own LXD requests go through a guarded target like a worker's."""
    token = secrets.token_hex(16)
    won = (
        _from(operation, Status.RUNNING)
        .filter(heartbeat_at=operation.heartbeat_at)
        .update(claim_token=token, heartbeat_at=timezone.now())
    )
    if won:
        operation.claim_token = token
        operation.log("The reconciler took the operation over from its silent worker.")
    return bool(won)


def note_reconciling(operation: Operation, message: str) -> bool:
    """The worker went silent but LXD still works on it: wait, and say so."""
    won = _from(operation, Status.RUNNING).update(heartbeat_at=timezone.now())
    if won:
        operation.log(message, "reconciling")
    return bool(won)


def end_by_reconciler(operation: Operation, status: str, words: str, state_after: str) -> bool:
    """End an operation whose worker went silent (or whose job was lost), unless a worker
    finished it meanwhile. The claim is cleared: a worker coming back finds it gone. The
    container's rows are written as the reconciler read them, in the same transaction."""
    words = operation.redacted(words)
    with transaction.atomic():
        won = _from(operation, *Operation.ACTIVE).update(
            status=status,
            outcome=words,
            container_state_after=state_after[:200],
            finished_at=timezone.now(),
            stage=status,
            may_cancel=False,
            claim_token="",
            result=operation.result,
        )
        if won:
            record_observations(operation)
    if not won:
        return False
    operation.status, operation.outcome = status, words
    operation.log(f"Reconciled: {words}", "reconciling")
    logger.warning("reconciled operation %s: %s", operation.pk, words)
    _after_end(operation, status)
    return True


def record_observations(operation: Operation) -> None:
    """The Instance rows of every container the work read since its last LXD action, hosts
    in a fixed order (each write locks its host's row)."""
    for (host_id, name), (summary, read_at) in sorted(operation.observations().items()):
        record_instance(host_id, name, summary, read_at)


def _after_end(operation: Operation, status: str) -> None:
    """Every failure joins its failure group, gets its bug-report bundle while the logs are
    fresh, and is told to whoever asked to hear of it; the hosts' inventories are read again
    so their pages show the truth, and a child's parent moves on. A maintenance is not
    grouped (its failed children are, by their own causes) and its bundle gathers its failed
    children's; a plan changed nothing, so it has neither. With the queue down the jobs are
    left to the reconcilers (they ask for missing bundles and move parents on; beat syncs
    every host)."""
    kind = operation.kind
    hosts = {h for h in (operation.source_host_id, operation.target_host_id) if h is not None}
    jobs = [(SYNC_HOST, host_id) for host_id in sorted(hosts)]
    if status in (Status.FAILED, Status.INTERRUPTED) and kind != Operation.Kind.MAINTENANCE_PLAN:
        bundle = COLLECT_OPERATION_BUNDLE
        if kind == Operation.Kind.MAINTENANCE:
            bundle = COLLECT_MAINTENANCE_BUNDLE
        else:
            # Grouped first (a few queries, here), so the bundle's report can say that its
            # cause is already reported upstream; a grouping that fails must not cost the bundle.
            transaction.on_commit(partial(grouping.group_failure, operation.pk), robust=True)
        jobs[:0] = [(bundle, operation.pk), (NOTIFY_FAILURE, operation.pk)]
    if operation.parent_id is not None:
        jobs.append((ADVANCE_MAINTENANCE, operation.parent_id))  # launch its next child, or end
    for task_name, pk in jobs:
        transaction.on_commit(partial(_send_quietly, task_name, pk))


def _send_quietly(task_name: str, pk: int) -> None:
    try:
        broker.send(task_name, pk)
    except broker.QueueUnavailable as error:
        logger.warning("could not send %s(%s) after an operation ended: %s", task_name, pk, error)
