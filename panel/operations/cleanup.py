"""The end of a migration: once the target is verified, record the figures and delete the
source copy, waiting while LXD 5.0.2 is still stopping it; and the stand-alone removal of a
copy left behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

from django.conf import settings
from django.db import connection

from panel import lxd
from panel.operations import aftercare
from panel.operations.models import Operation
from panel.operations.recovery import settle_source
from panel.operations.runner import OperationFailed, Tracker

if TYPE_CHECKING:
    from panel.operations.migration import Migration


def clean_up_source(migration: Migration, strategy: str) -> str:
    """Record the measurements, then delete the source copy, now that the target is
    verified. LXD 5.0.2 may still be stopping it ('busy running a "stop" operation'):
    retry until it is free. The source's logs (CRIU's dump log goes with the copy) are
    read while LXD stops it, not before: that wait is on every live migration's path."""
    if migration.params.get("keep_source"):
        settle_then_measure(migration, strategy)
        return f" The source copy was kept on {migration.source_host.name}, as asked."
    begin = time.monotonic()
    migration.source.enter(
        "cleaning up", f"Removing the source copy on {migration.source_host.name}."
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        measured = pool.submit(in_own_connection, settle_then_measure, migration, strategy)
        try:
            deletion = delete_when_stopped(migration.source, migration.name, measured.result)
        except lxd.LXDError as error:  # the source host went away: the copy may be left
            deletion = Deletion(str(error), None)
            if isinstance(error, lxd.LXDUnreachable):  # removed once it answers again
                aftercare.add(migration.operation, migration.source_host, migration.name,
                              aftercare.LEFT_BEHIND)  # fmt: skip
        measured.result()  # also when the copy never stopped: the figures are kept
    record_clean_up(migration, begin, deletion)
    if deletion.error:
        migration.operation.log(f"The source copy could not be removed: {deletion.error}")
        return (
            f" The source copy was left behind on {migration.source_host.name} (stopped): "
            f"{deletion.error}. Remove it with one click below."
        )
    return ""


def settle_then_measure(migration: Migration, strategy: str) -> None:
    """Let the source's side of the transfer end, then keep its logs and the figures.
    The container already runs verified on the target: LXD trouble here is noted, and
    never turns the migration into a failure."""
    try:
        if migration.unsettled_source_op is not None:
            settle_source(migration, migration.unsettled_source_op)
            migration.unsettled_source_op = None
        migration.downtime.record(strategy, migration.timeline)
    except lxd.LXDError as error:
        migration.operation.log(f"Could not read the source's logs and figures: {error}")
        migration.operation.result.setdefault("phases", migration.timeline.phases)


def record_clean_up(migration: Migration, begin: float, deletion: Deletion) -> None:
    """The clean-up's time, split where LXD let go of the source copy: until then it was
    finishing the copy's stop (about 0.5 s on Debian's LXD 5.0.2, mostly lxcfs's
    post-stop hook, a `sleep 0.5s`: lab/README.md). That wait is why `lxc move` fails
    at its delete there."""
    end, freed_at = time.monotonic(), deletion.last_try_at
    if deletion.error or freed_at is None or not deletion.refusals:
        migration.timeline.phase("clean up", begin, end)
        return
    migration.timeline.phase("clean up: LXD still stopping the source", begin, freed_at)
    migration.timeline.phase("clean up: delete", freed_at, end)
    migration.operation.log(f"LXD was still stopping the source copy for {freed_at - begin:.2f} s.")


class Deletion(NamedTuple):
    error: str  # '' once the instance is gone, else the last reason it could not be deleted
    last_try_at: float | None  # when the last delete was asked for (None: never asked)
    refusals: int = 0  # deletes LXD refused before that one


def delete_when_stopped(
    tracker: Tracker, name: str, before_delete: Callable[[], object] = lambda: None
) -> Deletion:
    """Delete a stopped instance, waiting while LXD is still busy with it (after a migration
    LXD 5.0.2 is often still stopping it: 'busy running a "stop" operation'). `before_delete`
    runs (and is waited for) once it has stopped, right before the first delete."""
    deadline = time.monotonic() + settings.MIGRATION_SOURCE_GRACE_SECONDS
    last_error, last_try_at, tries = "", None, 0
    while time.monotonic() < deadline:
        status = lxd.instance_status(tracker.target, name)
        if status is None:
            tracker.note_gone(name)
            return Deletion("", last_try_at, max(tries - 1, 0))
        if status == "Stopped":
            before_delete()
            last_try_at, tries = time.monotonic(), tries + 1
            try:
                state = tracker.follow(lxd.start_delete_instance(tracker.target, name))
            except lxd.LXDError as error:  # LXD may refuse at once while it is busy
                state, last_error = None, str(error)
            else:
                if state is None or state.status == "Success":
                    tracker.note_gone(name)
                    return Deletion("", last_try_at, tries - 1)
                last_error = state.error
        else:
            last_error = f"it is {status.upper()}"
        time.sleep(0.02)  # LXD frees the stopped copy about 0.5 s after it stops; be there
    return Deletion(last_error or "it did not stop in time", last_try_at, tries)


def in_own_connection(function: Callable, *args):
    """Run in a helper thread with its own database connection, closed afterwards."""
    try:
        return function(*args)
    finally:
        connection.close()


def delete_copy(operation: Operation) -> str:
    """Remove a stopped copy left behind (a source copy after a migration, a partial target).
    The aftercare also removes a stray copy that runs (`stop_first`): one a failed migration
    left started on the host where the container does not live."""
    tracker = Tracker(operation)
    status = lxd.instance_status(tracker.target, operation.instance_name)
    if status is None:
        tracker.note_gone(operation.instance_name)
        return "There was nothing to remove: the copy is already gone."
    if status != "Stopped" and operation.params.get("stop_first"):
        tracker.enter("stopping", f"Stopping the stray copy on {tracker.host.name} first.")
        tracker.follow(lxd.start_state_change(tracker.target, operation.instance_name, "stop",
                                              force=True))  # fmt: skip
        status = lxd.instance_status(tracker.target, operation.instance_name) or "Stopped"
    if status != "Stopped":
        raise OperationFailed(
            f"Refusing to remove a {status.upper()} instance: only a stopped copy is removed here.",
            state_after=status.upper(),
        )
    tracker.enter("deleting", f"Removing the stopped copy on {operation.known_source_host().name}.")
    error = delete_when_stopped(tracker, operation.instance_name).error
    if error:
        raise OperationFailed(f"Removing the copy failed: {error}.", error, "STOPPED")
    return f"Removed the stopped copy on {operation.known_source_host().name}."
