"""When a host's LXD stops answering during a one-host operation (snapshot, restore, stop...).

The work has already asked again for up to the peer wait while it followed LXD's operation
(panel/operations/peers.py). Here the host is asked once more within what is left of that
wait; then the operation ends with what LXD says the container is, or, if it still does not
answer, says that the state is unknown and why, and leaves a note for the aftercare, which
writes the container's state on this page once the host answers again.
"""

from __future__ import annotations

from django.utils import timezone

from panel import lxd
from panel.operations import aftercare
from panel.operations.container import restore_left_unsure
from panel.operations.models import Operation
from panel.operations.peers import wait_for_answer
from panel.operations.reconciler import verdict
from panel.operations.runner import Tracker

Status = Operation.Status


def after_lost_contact(operation: Operation, error: lxd.LXDUnreachable) -> tuple[str, str, str]:
    """(status, outcome, state after) of an operation whose host stopped answering."""
    tracker = Tracker(operation)
    host, name = tracker.host.name, operation.instance_name
    seen = wait_for_answer(tracker, name, str(error))
    lead = (
        f"{host}'s {tracker.host.platform.name} stopped answering during the operation ({error}). "
    )
    if not seen.answered:
        since = timezone.localtime().strftime("%H:%M:%S")
        aftercare.add(operation, tracker.host, name, aftercare.HOME)
        return (
            Status.FAILED,
            f"{lead}It still did not answer at {since}, so the container's state there is "
            "unknown. The panel asks again every minute and writes what it finds on this page; "
            f"check the host ({host}'s page, or `manage.py doctor`).",
            f"on {host}, unknown (its LXD does not answer)",
        )
    where = {"source": seen.summary, "target": None, "summary": seen.describe()}
    status, words = verdict(operation, where, lead=f"{lead}It answered again: ")
    state_after = f"on {host}, {seen.describe().split(': ', 1)[1]}"
    if status == Status.SUCCEEDED:
        return status, words, state_after
    saved_state = bool(seen.summary and seen.summary["stateful"])
    return Status.FAILED, words + advice(seen.status, saved_state, operation), state_after


def advice(status: str, saved_state: bool, operation: Operation) -> str:
    if operation.kind == Operation.Kind.RESTORE and status in ("Running", "Stopped"):
        snap = operation.params.get("snapshot", "")
        return " " + restore_left_unsure(operation.server_names, snap)
    if status == "Running":
        return " Nothing was lost: it is still running."
    if status == "Stopped" and saved_state:
        return " Starting it restores its processes from the saved state."
    if status == "Stopped":
        return " Its running state was lost: start it."
    return " Check the container's page."
