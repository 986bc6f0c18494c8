"""The one runner every operation goes through: claim, run, record the truth.

Expected failures (LXD said no, the container is in a state we can describe) are raised as
`OperationFailed` with plain words for the user; anything else is a bug in the panel and is
recorded as such, with the container state still described where we can.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from celery import Task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from panel import lxd
from panel.models import Host, Operation
from workers.hosts import target_for

logger = logging.getLogger(__name__)


class OperationFailed(Exception):
    """The operation failed in a way we understand: `outcome` says it for the user."""

    def __init__(self, outcome: str, error: str = "", state_after: str = "") -> None:
        super().__init__(outcome)
        self.outcome, self.error, self.state_after = outcome, error, state_after


class OperationCancelled(Exception):
    """The user asked to cancel and LXD (or the queue) let us."""


def run(operation_id: int, work: Callable[[Operation], str], task: Task) -> Operation | None:
    """Claim a pending operation and run `work` on it; returns it when this call ran it.

    The claim is one conditional UPDATE: a redelivered or duplicated task finds the row no
    longer pending and does nothing, so no LXD action is ever started twice. When a host it
    needs already runs PANEL_HOST_MAX_OPERATIONS operations, the operation stays pending and
    `task` is sent again a little later.
    """
    claim = claim_operation(operation_id)
    if claim == HOST_BUSY:
        task.apply_async((operation_id,), countdown=settings.HOST_SLOT_RETRY_SECONDS)
        return None
    if claim != CLAIMED:
        logger.info("operation %s is not pending any more; not running it again", operation_id)
        return None
    operation = Operation.objects.select_related("instance", "source_host", "target_host").get(
        pk=operation_id
    )
    operation.log("A worker started the operation.")
    try:
        outcome = work(operation)
    except OperationFailed as failure:
        finish(
            operation, Operation.Status.FAILED, failure.outcome, failure.error, failure.state_after
        )
    except OperationCancelled as cancelled:
        finish(operation, Operation.Status.CANCELLED, str(cancelled))
    except lxd.LXDUnreachable as error:
        finish(
            operation,
            Operation.Status.FAILED,
            "The panel lost contact with LXD during the operation, so it cannot say what "
            "LXD did. The container was left as LXD has it. Check the host (its page, or "
            "`manage.py doctor`); once LXD answers again the panel re-reads the container "
            "at its next sync, and its page shows the truth.",
            str(error),
            "unknown: LXD did not answer",
        )
    except lxd.LXDError as error:
        finish(
            operation,
            Operation.Status.FAILED,
            "LXD refused a request of this operation; the container was left as LXD has it "
            "(see its page). LXD's words are below.",
            str(error),
        )
    except Exception as error:
        logger.exception("operation %s crashed", operation_id)
        finish(
            operation,
            Operation.Status.FAILED,
            "The panel hit an unexpected error (a bug); the container was left as LXD has it.",
            f"{error.__class__.__name__}: {error}",
        )
    else:
        finish(operation, Operation.Status.SUCCEEDED, outcome)
    return operation


CLAIMED, NOT_PENDING, HOST_BUSY = "claimed", "not pending", "host busy"
WAITING_FOR_HOST = "waiting for host"


def claim_operation(operation_id: int) -> str:
    """Mark a pending operation running, unless one of its hosts is already at its limit.

    The hosts' rows are locked while counting (SQLite: the IMMEDIATE transaction serialises
    writers), so two workers can never both take a host's last slot.
    """
    with transaction.atomic():
        pending = Operation.objects.filter(pk=operation_id, status=Operation.Status.PENDING)
        operation = pending.select_related("source_host", "target_host").first()
        if operation is None:
            return NOT_PENDING
        text = why_it_waits(operation)
        now = timezone.now()
        if text:
            pending.update(stage=WAITING_FOR_HOST, progress_text=text, heartbeat_at=now)
            if operation.stage != WAITING_FOR_HOST:
                operation.log(text, WAITING_FOR_HOST)
            return HOST_BUSY
        pending.update(
            status=Operation.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            stage="starting",
            progress_text="",
        )
        return CLAIMED


def why_it_waits(operation: Operation) -> str:
    """Why the operation may not take its hosts' slots now, in words; '' when it may."""
    full = hosts_at_limit(operation)
    if full:
        waiting = ", ".join(f"{host.name} runs {count}" for host, count in full)
        return (
            f"Waiting for a free slot: {waiting} "
            f"(limit {settings.HOST_MAX_OPERATIONS} per host); it starts by itself."
        )
    ahead = older_waiter(operation)
    if ahead:
        return (
            f"Waiting for a free slot: operation #{ahead.pk}, asked earlier for the "
            "same host, goes first; this one starts by itself."
        )
    return ""


def slot_hosts(operation: Operation) -> list[Host]:
    """The hosts whose slots the operation takes. A pre-flight check only reads, so it never
    waits for a slot nor takes one."""
    if operation.kind == Operation.Kind.PREFLIGHT:
        return []
    return [h for h in (operation.source_host, operation.target_host) if h is not None]


def older_waiter(operation: Operation) -> Operation | None:
    """An operation asked earlier that is waiting for a slot on one of the same hosts (and
    whose worker looked again lately): first come, first served."""
    hosts = [host.pk for host in slot_hosts(operation)]
    if not hosts:
        return None
    lately = timezone.now() - dt.timedelta(seconds=10 * settings.HOST_SLOT_RETRY_SECONDS + 5)
    return (
        Operation.objects.filter(
            status=Operation.Status.PENDING,
            stage=WAITING_FOR_HOST,
            heartbeat_at__gte=lately,
            queued_at__lt=operation.queued_at,
        )
        .filter(Q(source_host__in=hosts) | Q(target_host__in=hosts))
        .exclude(pk=operation.pk)
        .order_by("queued_at", "pk")
        .first()
    )


def hosts_at_limit(operation: Operation) -> list[tuple[Host, int]]:
    """The operation's hosts that already run as many operations as allowed, with counts."""
    hosts = slot_hosts(operation)
    if not hosts:
        return []
    list(Host.objects.select_for_update().filter(pk__in=[h.pk for h in hosts]).order_by("pk"))
    running = Operation.objects.filter(status=Operation.Status.RUNNING).exclude(
        kind=Operation.Kind.PREFLIGHT
    )
    counts = [
        (host, running.filter(Q(source_host=host) | Q(target_host=host)).count()) for host in hosts
    ]
    return [(host, count) for host, count in counts if count >= settings.HOST_MAX_OPERATIONS]


def finish(
    operation: Operation, status: str, outcome: str, error: str = "", state_after: str = ""
) -> None:
    operation.status, operation.outcome, operation.error = status, outcome, error
    operation.container_state_after = state_after or operation.container_state_after
    operation.finished_at = timezone.now()
    operation.may_cancel = False
    operation.stage = "done" if status == Operation.Status.SUCCEEDED else status
    operation.save()
    operation.log(
        f"{operation.get_status_display()}: {outcome}" + (f" LXD: {error}" if error else "")
    )
    if status in (Operation.Status.FAILED, Operation.Status.INTERRUPTED):
        # Every failure gets its bug-report bundle while the logs are fresh. Imported here:
        # the bundle task imports the hosts module this runner also depends on.
        from workers.bundles import collect_operation_bundle

        collect_operation_bundle.delay_on_commit(operation.pk)


class Tracker:
    """Follows one LXD operation and copies what it learns into the row at a bounded rate."""

    WRITE_INTERVAL = 1.0

    def __init__(self, operation: Operation, host: Host | None = None) -> None:
        self.operation = operation
        self.target = target_for(host or operation.source_host)
        self._last_write = 0.0

    def enter(self, stage: str, message: str) -> None:
        self.operation.stage = stage
        self.operation.progress_text, self.operation.progress_fraction = "", None
        self.operation.heartbeat_at = timezone.now()
        self.operation.save(
            update_fields=["stage", "progress_text", "progress_fraction", "heartbeat_at"]
        )
        self.operation.log(message, stage)

    def follow(self, operation_id: str, timeout: float | None = None) -> lxd.OperationState | None:
        """Poll until LXD's operation ends; None when LXD already forgot it (it keeps
        finished operations only seconds), in which case the caller checks the outcome."""
        self.remember(operation_id)
        deadline = time.monotonic() + (timeout or settings.OPERATION_TIMEOUT_SECONDS)
        told_not_cancellable = False
        while True:
            state = lxd.wait_operation(self.target, operation_id, seconds=1)
            if state is None or state.finished:
                return state
            self._record(state)
            if self._cancel_requested():
                if state.may_cancel:
                    lxd.cancel_operation(self.target, operation_id)
                    self.operation.log("Cancel requested: asked LXD to cancel its operation.")
                elif not told_not_cancellable:
                    self.operation.log(
                        "Cancel requested, but LXD says this step cannot be cancelled."
                    )
                    told_not_cancellable = True
            if time.monotonic() > deadline:
                self._give_up(operation_id, state)

    def _record(self, state: lxd.OperationState) -> None:
        self.record_progress(state.progress_text, state.may_cancel)

    def record_progress(self, text: str, may_cancel: bool = False) -> None:
        """Copy LXD's progress into the row, at most once a second (many may be watching)."""
        now = time.monotonic()
        if now - self._last_write < self.WRITE_INTERVAL:
            return
        self._last_write = now
        Operation.objects.filter(pk=self.operation.pk).update(
            progress_text=text[:500], may_cancel=may_cancel, heartbeat_at=timezone.now()
        )

    def remember(self, operation_id: str) -> None:
        """Keep every LXD operation id on the row: the reconciler and bug reports need them."""
        self.operation.lxd_operation_ids.append(operation_id)
        Operation.objects.filter(pk=self.operation.pk).update(
            lxd_operation_ids=self.operation.lxd_operation_ids
        )

    def _cancel_requested(self) -> bool:
        return Operation.objects.filter(pk=self.operation.pk, cancel_requested=True).exists()

    def _give_up(self, operation_id: str, state: lxd.OperationState) -> None:
        if state.may_cancel:
            lxd.cancel_operation(self.target, operation_id)
        raise OperationFailed(
            f"LXD's operation did not finish within {settings.OPERATION_TIMEOUT_SECONDS} s; "
            + (
                "the panel cancelled it."
                if state.may_cancel
                else "it could not be cancelled and may still be running on the host."
            ),
            error=f"operation {operation_id} still {state.status}",
        )
