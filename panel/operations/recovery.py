"""When a migration's target fails: settle LXD's leftover source operation, keep CRIU's restore
errors, and let settle.py decide where the container lives (LXD 5.0.2 says Running while a
stuck CRIU dump holds it on the source) and remove the target's partial copy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings

from panel import lxd
from panel.operations import settle
from panel.operations.container import criu_log_excerpt
from panel.operations.runner import OperationFailed

if TYPE_CHECKING:
    from panel.operations.migration import Migration


def settle_source(
    migration: Migration, source_op: str, grace_seconds: float | None = None
) -> lxd.OperationState | None:
    """Wait (bounded) for the source's side to end, cancelling it if LXD allows. A source
    that does not answer is left to the settling that follows (None)."""
    target = migration.source.target
    seconds = settings.MIGRATION_SOURCE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    try:
        grace = time.monotonic() + seconds
        state = lxd.wait_operation(target, source_op, seconds=1)
        while state is not None and not state.finished and time.monotonic() < grace:
            state = lxd.wait_operation(target, source_op, seconds=1)
        if state is not None and not state.finished and state.may_cancel:
            lxd.cancel_operation(target, source_op)
            migration.operation.log(f"Cancelled the source's LXD operation {source_op}.")
            state = lxd.wait_operation(target, source_op, seconds=5)
    except lxd.LXDUnreachable as error:
        migration.operation.log(f"The source's LXD does not answer ({error}).", "reconciling")
        if migration.source.patience.since is None:  # its peer wait starts now
            migration.source.patience.since = time.monotonic()
        return None
    return state


TARGET_FAILED_GRACE_SECONDS = 5


def target_failed(
    migration: Migration, source_op: str, target_op: str, error: str, why: str = ""
) -> OperationFailed:
    """The target's side failed: the container's home is the source (settle.py), made to run
    again there, the target's copy removed; CRIU's restore errors are added to LXD's."""
    migration.target.enter("reconciling", f"The target failed ({error}); checking both hosts.")
    restore_errors = criu_errors_on_target(migration)
    # The source's side normally ends within a second of the target's failure; one left
    # waiting on its connections is cancelled by the settling anyway (settle.fence).
    settle_source(migration, source_op, grace_seconds=TARGET_FAILED_GRACE_SECONDS)
    sides = migration.sides()
    why = why or f"Migration failed on {migration.target_host.name}"
    if migration.source.patience.ever_silent or migration.downtime.source_silent:
        why = (
            f"{migration.source_host.name}'s LXD stopped answering during the migration, and "
            f"the target's side failed without it"
        )
    _, source, target = settle.after_fault(sides, why, error, "the transfer")
    failure = settle.keep_at_source(sides, why, error, source, target)
    if restore_errors:
        failure.error = (
            f"{error}\n\nFrom CRIU's log on {migration.target_host.name}:\n{restore_errors}"
        )
    return failure


def criu_errors_on_target(migration: Migration) -> str:
    try:
        logs = lxd.instance_logs(
            migration.target.target, migration.new_name, 1024 * 1024, keep_end=True
        )
    except lxd.LXDError:
        return ""
    for filename, text, _ in sorted(logs, reverse=True):
        if filename.startswith(("migration_restore_", "snapshot_restore_")):
            return criu_log_excerpt(filename, text)
    return ""


def remove_partial_target(migration: Migration) -> None:
    """A failed transfer can leave a stopped, half-made copy on the target: remove it so
    the one real copy stays on the source and a retry finds the name free."""
    status = lxd.instance_status(migration.target.target, migration.new_name)
    if status is None or status == "Running":
        return
    migration.target.follow(lxd.start_delete_instance(migration.target.target, migration.new_name))
    migration.target.note_gone(migration.new_name)
    migration.operation.log(
        f"Removed the partial copy on {migration.target_host.name}.", "reconciling"
    )
