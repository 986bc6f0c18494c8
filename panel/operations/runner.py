"""The one runner every operation goes through: claim, run, record the truth; and the Tracker
a work function uses to follow LXD.

Expected failures (LXD said no, the container is in a state we can describe) are raised as
`OperationFailed` with plain words for the user; anything else is a bug in the panel and is
recorded as such, with the container state still described where we can. Every status change
goes through panel/operations/lifecycle.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from celery import Task
from django.conf import settings
from django.utils import timezone

from panel import lxd
from panel.hosts.connection import target_for
from panel.hosts.models import Host
from panel.logs import operation_context
from panel.operations import lifecycle, phases
from panel.operations.models import Operation
from panel.operations.peers import Patience

logger = logging.getLogger(__name__)
Status = Operation.Status


class OperationFailed(Exception):
    """The operation failed in a way we understand: `outcome` says it for the user."""

    def __init__(self, outcome: str, error: str = "", state_after: str = "") -> None:
        super().__init__(outcome)
        self.outcome, self.error, self.state_after = outcome, error, state_after


class OperationCancelled(Exception):
    """The user asked to cancel and LXD (or the queue) let us; `state_after` says where the
    container was left."""

    def __init__(self, outcome: str, state_after: str = "") -> None:
        super().__init__(outcome)
        self.state_after = state_after


class OperationLost(Exception):
    """This worker no longer owns its operation (the reconciler ended it while the worker was
    away): it must change nothing and make no further LXD call."""


# {server}: "LXD", "Incus" or "LXD and Incus" (Operation.server_names).
LOST_CONTACT = (
    "The panel lost contact with {server} during the operation, so it cannot say what {server} "
    "did. The container was left as {server} has it. Check the host (its page, or `manage.py "
    "doctor`); once {server} answers again the panel re-reads the container at its next sync, "
    "and its page shows the truth."
)
REFUSED = (
    "{server} refused a request of this operation; the container was left as {server} has it "
    "(see its page). {server}'s words are below."
)
CRASHED = "The panel hit an unexpected error (a bug); the container was left as LXD has it."


LostContact = Callable[[Operation, lxd.LXDUnreachable], tuple[str, str, str]]


def run(
    operation_id: int,
    work: Callable[[Operation], str],
    task: Task,
    on_lost_contact: LostContact | None = None,
) -> Operation | None:
    """`claim_and_run`, with every line logged meanwhile naming the operation."""
    with operation_context(operation_id):
        return claim_and_run(operation_id, work, task, on_lost_contact)


def claim_and_run(
    operation_id: int,
    work: Callable[[Operation], str],
    task: Task,
    on_lost_contact: LostContact | None = None,
) -> Operation | None:
    """Claim a pending operation and run `work` on it; returns it when this call ran it.

    The claim is one conditional UPDATE: a redelivered or duplicated task finds the row no
    longer pending and does nothing, so no LXD action is ever started twice. When a host it
    needs already runs PANEL_HOST_MAX_OPERATIONS operations, the operation stays pending and
    `task` is sent again a little later. When LXD stops answering, `on_lost_contact` asks
    the host once more and says what it found (panel/operations/contact.py).
    """
    claimed = lifecycle.claim(operation_id)
    if claimed.verdict == lifecycle.HOST_BUSY:
        task.apply_async((operation_id,), countdown=settings.HOST_SLOT_RETRY_SECONDS)
        return None
    if claimed.verdict != lifecycle.CLAIMED:
        logger.info("operation %s is not pending any more; not running it again", operation_id)
        return None
    operation = Operation.objects.select_related("instance", "source_host", "target_host").get(
        pk=operation_id
    )
    operation.log("A worker started the operation.")
    try:
        outcome = work(operation)
    except OperationLost:
        logger.warning("operation %s was ended while its worker was away; stopped", operation_id)
        operation.log("The worker came back after the operation was ended; it stopped there.")
        return None
    except OperationFailed as failure:
        lifecycle.finish(operation, Status.FAILED, failure.outcome, failure.error,
                         failure.state_after)  # fmt: skip
    except OperationCancelled as cancelled:
        lifecycle.finish(operation, Status.CANCELLED, str(cancelled), "", cancelled.state_after)
    except lxd.LXDUnreachable as error:
        lost_contact(operation, error, on_lost_contact)
    except lxd.LXDError as error:
        lifecycle.finish(operation, Status.FAILED,
                         REFUSED.format(server=operation.server_names), str(error))  # fmt: skip
    except Exception as error:
        logger.exception("operation %s crashed", operation_id)
        lifecycle.finish(operation, Status.FAILED, CRASHED, f"{error.__class__.__name__}: {error}")
    else:
        lifecycle.finish(operation, Status.SUCCEEDED, outcome)
    return operation


def lost_contact(
    operation: Operation, error: lxd.LXDUnreachable, on_lost_contact: LostContact | None
) -> None:
    if on_lost_contact is None:
        server = operation.server_names
        lifecycle.finish(operation, Status.FAILED, LOST_CONTACT.format(server=server),
                         str(error), f"unknown: {server} did not answer")  # fmt: skip
        return
    try:
        status, outcome, state_after = on_lost_contact(operation, error)
    except OperationLost:
        operation.log("The worker came back after the operation was ended; it stopped there.")
        return
    lifecycle.finish(operation, status, outcome, str(error), state_after)


class Tracker:
    """One host of a running operation: its LXD target, whose every request first checks that
    this worker still owns the operation, and the following of LXD's operations, copying what
    it learns into the row at a bounded rate."""

    WRITE_INTERVAL = 1.0

    def __init__(self, operation: Operation, host: Host | None = None) -> None:
        self.operation = operation
        self.host = host or operation.known_source_host()
        self.target = dataclasses.replace(target_for(self.host), guard=self.check_owned)
        self.patience = Patience(self)  # how long this host may stay silent (peers.py)
        self._last_write = 0.0

    def check_owned(self) -> None:
        if not lifecycle.still_owned(self.operation):
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")

    def enter(self, stage: str, message: str) -> None:
        fraction = phases.fraction(self.operation, stage)
        if not lifecycle.enter_stage(self.operation, stage, message, fraction):
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")

    def follow(self, operation_id: str, timeout: float | None = None) -> lxd.OperationState | None:
        """Poll until LXD's operation ends; None when LXD already forgot it (it keeps
        finished operations only seconds), in which case the caller checks the outcome."""
        self.remember(operation_id)
        deadline = time.monotonic() + (timeout or settings.OPERATION_TIMEOUT_SECONDS)
        told_not_cancellable = False
        while True:
            try:
                state = lxd.wait_operation(self.target, operation_id, seconds=1)
            except lxd.LXDUnreachable as error:
                if self.patience.silent(error):
                    continue
                raise
            self.patience.answered()
            if state is None or state.finished:
                return state
            self.record_progress(state.progress_text, state.may_cancel, state.transfer.percent)
            cancel = lifecycle.cancel_asked(self.operation)
            if cancel is None:
                raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")
            if cancel:
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

    def keep_alive(self, text: str) -> None:
        """A heartbeat with words, while the work waits for something other than LXD."""
        if not lifecycle.record_progress(self.operation, text):
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")

    def record_progress(
        self, text: str, may_cancel: bool = False, percent: float | None = None
    ) -> None:
        """Copy LXD's progress into the row, at most once a second (many may be watching),
        with the fraction of the known phases done (inside this one where LXD says how far)."""
        now = time.monotonic()
        if now - self._last_write < self.WRITE_INTERVAL:
            return
        self._last_write = now
        within = None if percent is None else percent / 100
        fraction = phases.fraction(self.operation, self.operation.stage, within)
        if not lifecycle.record_progress(self.operation, text, may_cancel, fraction):
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")

    def remember(self, operation_id: str) -> None:
        """A new LXD action: what was read of the container before it no longer counts."""
        self.operation.forget_observations()
        if not lifecycle.remember_lxd_operation(self.operation, operation_id):
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")

    def summary(self, name: str) -> dict | None:
        """The container on this host as LXD reports it now (None: not there), remembered
        for its row when the operation ends."""
        read_at = timezone.now()
        found = lxd.instance_summary(self.target, name)
        self.operation.observe(self.host.pk, name, found, read_at)
        return found

    def note_gone(self, name: str) -> None:
        """LXD just said the container is not on this host (it was deleted)."""
        self.operation.observe(self.host.pk, name, None, timezone.now())

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
