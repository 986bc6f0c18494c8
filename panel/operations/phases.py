"""The known phases of each kind of operation, in order, for the progress stepper and for
`progress_fraction`.

A phase is a stage the work functions enter (`Tracker.enter`); the fraction of an operation
is the share of its phases already behind it, refined inside a phase when LXD says how far
it is (a percentage in its progress text). A stage that is not one of the kind's phases
(waiting for a host, reconciling) changes nothing: the stepper keeps the last known one.
"""

from __future__ import annotations

from dataclasses import dataclass

from panel.operations.models import Operation

Kind = Operation.Kind
LABELS = {
    "checking": "check",
    "snapshotting": "snapshot",
    "checkpointing": "checkpoint",
    "stopping": "stop",
    "starting": "start",
    "restarting": "restart",
    "restoring": "restore",
    "transferring": "transfer",
    "deleting": "delete",
    "verifying": "verify",
    "pruning": "prune old snapshots",
    "cleaning up": "clean up",
    "releasing": "free from the dump",
}
MIGRATION_PHASES = {
    "live": ["checking", "transferring", "verifying", "cleaning up"],
    "stateful_move": [
        "checking", "checkpointing", "transferring", "restoring", "verifying", "cleaning up"
    ],
    "cold": ["checking", "stopping", "transferring", "starting", "verifying", "cleaning up"],
    "stopped": ["checking", "transferring", "verifying", "cleaning up"],
}  # fmt: skip
PHASES: dict[str, list[str]] = {
    Kind.SNAPSHOT: ["snapshotting", "verifying"],
    Kind.STATEFUL_SNAPSHOT: ["checkpointing", "verifying"],
    Kind.RESTORE: ["restoring", "verifying"],
    Kind.DELETE_SNAPSHOT: ["deleting"],
    Kind.START: ["starting", "verifying"],
    Kind.START_FRESH: ["starting", "verifying"],
    Kind.STOP: ["stopping", "verifying"],
    Kind.RESTART: ["restarting", "verifying"],
    Kind.STATEFUL_STOP: ["checkpointing", "verifying"],
    Kind.PREFLIGHT: ["checking"],
    Kind.DELETE_COPY: ["deleting"],
    Kind.RELEASE_DUMP: ["releasing"],
}


def phases_of(operation: Operation, seen: frozenset[str] = frozenset()) -> list[str]:
    """The stages this operation goes through, as far as its parameters and the stages it
    has entered (`seen`) tell."""
    params = operation.params or {}
    if operation.kind == Kind.MIGRATE:
        if params.get("keep_source"):
            return MIGRATION_PHASES.get(params.get("strategy", ""), [])[:-1]
        return MIGRATION_PHASES.get(params.get("strategy", ""), [])
    phases = list(PHASES.get(operation.kind, []))
    if operation.kind == Kind.START and "restoring" in seen | {operation.stage}:
        phases[0] = "restoring"  # a start from saved state restores the checkpoint
    if "keep" in params:  # a scheduled snapshot prunes the oldest ones after it
        phases.append("pruning")
    return phases


def fraction(operation: Operation, stage: str, within: float | None = None) -> float | None:
    """The share of the known phases behind an operation in `stage` (None when unknown)."""
    phases = phases_of(operation, frozenset({stage}))
    if stage not in phases:
        return None
    done = phases.index(stage) + min(max(within or 0.0, 0.0), 1.0)
    return round(done / len(phases), 3)


@dataclass(frozen=True)
class Step:
    """One phase as the stepper shows it: done, current, failed or to come."""

    stage: str
    label: str
    state: str


def steps(operation: Operation, seen: frozenset[str]) -> list[Step]:
    """The stepper: `seen` are the stages the operation's log has entered."""
    phases = phases_of(operation, seen)
    current = operation.stage if operation.stage in phases else None
    if current is None:
        current = next((stage for stage in reversed(phases) if stage in seen), None)
    position = phases.index(current) if current else -1
    ended = not operation.is_active
    result = []
    for index, stage in enumerate(phases):
        if operation.status == Operation.Status.SUCCEEDED or index < position:
            state = "done"
        elif index == position:
            state = "failed" if ended else "current"
        else:
            state = "skipped" if ended else "upcoming"
        result.append(Step(stage, LABELS.get(stage, stage), state))
    return result
