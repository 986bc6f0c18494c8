"""After a migration went wrong: one home for the container, and every other copy a stray.

Whatever failed (the target's restore, either host's LXD dying, the link between them cut, the
worker dying), the decision is the same, made once from what each host says:

- The container's home is the target when its copy there runs (or, if the target does not
  answer, when the panel saw it running there before it went silent). Otherwise the home is
  the source, where the original copy has been all along.
- At home the container is made to run again where LXD and CRIU allow it: a stuck CRIU dump
  is ended so that it goes on with the same processes (panel/operations/stuck.py), a copy
  stopped with its saved state is started from it (its processes restored). Where the
  running state is truly lost, the container stays stopped there and the outcome says so.
- A stray copy on the other host is removed (stopped first if it runs), now if that host
  answers, else once it answers again (panel/operations/aftercare.py).

A host that does not answer is asked again for up to the peer wait (panel/operations/peers.py),
then decided without: its part is left to the aftercare, and the outcome says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from panel import lxd
from panel.operations import aftercare, stuck
from panel.operations.peers import Seen, look, wait_for_answer
from panel.operations.runner import OperationFailed, Tracker


@dataclass
class Sides:
    """A migration's two hosts and what the panel knows about its run so far."""

    source: Tracker
    target: Tracker
    name: str
    new_name: str
    strategy: str
    source_op: str | None = None  # the source's side of the transfer, once it started
    dump_operations: list[str] = field(default_factory=list)
    dumps_before: list[str] = field(default_factory=list)
    init_pid_before: int | None = None
    target_seen_running: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of_operation(cls, source: Tracker, target: Tracker) -> Sides:
        """The sides of a migration whose worker is gone, from what its row kept."""
        operation = source.operation
        result, ids = operation.result, operation.lxd_operation_ids
        return cls(
            source=source,
            target=target,
            name=operation.instance_name,
            new_name=operation.target_name or operation.instance_name,
            strategy=operation.params.get("strategy", ""),
            source_op=ids[0] if ids and operation.params.get("strategy") == "live" else None,
            dump_operations=list(result.get("dump_operations", [])),
            dumps_before=list(result.get("dumps_before", [])),
            init_pid_before=result.get("init_pid_before"),
            target_seen_running=bool(result.get("target_seen_running")),
        )


HOME_TARGET, HOME_SOURCE, UNDECIDED = "target", "source", "undecided"
# The target went silent while it started the moved copy (checkpoint-move-restore, cold): that
# start may finish without the panel seeing it, so starting the source's copy too could make
# two. The container waits, stopped with its saved state, until the target answers.
TARGET_STARTING = ("restoring", "starting")


def look_or_wait(tracker: Tracker, name: str, why: str) -> Seen:
    seen = look(tracker, name)
    return seen if seen.answered else wait_for_answer(tracker, name, why)


def after_fault(sides: Sides, why: str, error: str, stage: str) -> tuple[str, Seen, Seen]:
    """Ask both hosts (waiting for a silent one up to the peer wait) and decide the home:
    (home, the source's copy, the target's copy)."""
    operation = sides.source.operation
    operation.log(f"{why} (during {stage}); asking both hosts where the container is.",
                  "reconciling")  # fmt: skip
    source = look_or_wait(sides.source, sides.name, why)
    target = look_or_wait(sides.target, sides.new_name, why)
    return home_of(target, sides.target_seen_running, stage, sides.strategy), source, target


def home_of(target: Seen, seen_running: bool, stage: str, strategy: str) -> str:
    """Where the container lives, from the target's copy and what the panel saw before."""
    if target.answered:
        return HOME_TARGET if target.status == "Running" else HOME_SOURCE
    if seen_running:
        return HOME_TARGET
    if stage in TARGET_STARTING and strategy != "live":
        return UNDECIDED
    return HOME_SOURCE


def keep_at_source(sides: Sides, why: str, error: str, source: Seen, target: Seen):
    """The home is the source: make the container run there again where it can, remove the
    stray copy on the target, and say it all. Returns the OperationFailed to raise."""
    fence(sides)
    words, state_after = source_words(sides, source)
    words += " " + remove_stray(sides, target)
    return OperationFailed(f"{why}. {words}".strip(), error, state_after)


def fence(sides: Sides) -> None:
    """Cancel the source's side of the transfer if it still runs: its connections close, so
    a target that comes back later cannot finish restoring a copy from it."""
    if sides.source_op is None:
        return
    try:
        state = lxd.operation_state(sides.source.target, sides.source_op)
        if state is not None and not state.finished and state.may_cancel:
            lxd.cancel_operation(sides.source.target, sides.source_op)
            sides.source.operation.log(
                f"Cancelled the source's migration operation {sides.source_op}, so that the "
                "target can no longer finish from it.",
                "reconciling",
            )
    except lxd.LXDError as error:
        sides.source.operation.log(f"Could not cancel the source's side: {error}", "reconciling")


def source_words(sides: Sides, source: Seen) -> tuple[str, str]:
    """Make the source's copy run again where LXD and CRIU allow, and say where it is."""
    host, operation = sides.source.host, sides.source.operation
    if not source.answered:
        aftercare.add(operation, host, sides.name, aftercare.HOME)
        return (
            f"The container is on {host.name}, whose LXD does not answer "
            f"({source.error}); its state there is unknown until it answers again. The panel "
            "asks again every minute and writes what it finds here.",
            f"on {host.name}, unknown (its LXD does not answer)",
        )
    if source.summary is None:
        return f"There is no copy of the container on {host.name}.", f"not on {host.name}"
    waiting = stuck.still_waiting(sides.source, dumps_of(sides))
    if not waiting and sides.strategy == "live" and source.status == "Running":
        waiting = ["unknown"] if stuck.init_held(sides.source, sides.name) else []
    if waiting:
        released = stuck.release(sides.source, sides.name, "resume", waiting)
        if not released.freed:
            aftercare.add(operation, host, sides.name, aftercare.HOME, waiting)
            return released.words, f"on {host.name}, held by a stuck CRIU dump"
        sides.notes.append(released.words)
        source = look(sides.source, sides.name)
    return bring_back(sides, source)


def dumps_of(sides: Sides) -> list[str]:
    """This migration's CRIU dump operations on the source, known or worked out."""
    if sides.dump_operations or sides.strategy != "live":
        return sides.dump_operations
    try:
        return sorted(stuck.running_dumps(sides.source) - set(sides.dumps_before))
    except lxd.LXDError:
        return []


def bring_back(sides: Sides, source: Seen) -> tuple[str, str]:
    """The source's copy answered: running, restartable from its saved state, or stopped."""
    host = sides.source.host.name
    freed = " ".join(sides.notes)
    status = source.status
    if status == "Frozen":
        sides.source.follow(lxd.start_state_change(sides.source.target, sides.name, "unfreeze"))
        source, status = look(sides.source, sides.name), "Running"
    if status == "Stopped" and source.summary and source.summary["stateful"]:
        sides.source.enter("restoring", f"Starting {sides.name} on {host} from its saved state.")
        state = sides.source.follow(
            lxd.start_state_change(sides.source.target, sides.name, "start", stateful=True)
        )
        source = look(sides.source, sides.name)
        if source.status == "Running":
            return (
                f"The panel started the container again on {host} from its saved state: it "
                f"runs there with its processes restored.",
                f"on {host}, RUNNING (restored from its saved state)",
            )
        error = state.error if state is not None else ""
        return (
            f"Starting it again on {host} from its saved state failed ({error}): it is "
            f"{source.status.upper()} there. Start it without the saved state, or retry.",
            f"on {host}, {describe(source)}",
        )
    if status == "Running":
        return f"{freed} {running_words(sides, host)}".strip(), f"on {host}, RUNNING"
    if status == "Stopped" and sides.strategy == "cold":  # stopped for the move: start it back
        sides.source.follow(lxd.start_state_change(sides.source.target, sides.name, "start"))
        if look(sides.source, sides.name).status == "Running":
            return (
                f"The panel started the container again on {host} (the cold strategy had "
                "stopped it: it booted afresh, as that strategy does).",
                f"on {host}, RUNNING",
            )
    return (
        f"{freed} The container is {describe(source)} on {host}: its running state was lost. "
        "Start it there.".strip(),
        f"on {host}, {describe(source)}",
    )


def running_words(sides: Sides, host: str) -> str:
    """Running on the source: the same processes, or started afresh (LXD restarted it)?"""
    try:
        pid = lxd.instance_init_pid(sides.source.target, sides.name)
    except lxd.LXDError:
        pid = None
    if sides.init_pid_before and pid and pid != sides.init_pid_before:
        return (
            f"The container runs on {host}, but LXD started it afresh (init PID "
            f"{sides.init_pid_before} before, {pid} now): its running state was lost."
        )
    same = f" (init PID {pid}, as before)" if pid and pid == sides.init_pid_before else ""
    return f"The container is still running on {host} with the same processes{same}."


def describe(seen: Seen) -> str:
    if seen.summary is None:
        return "GONE"
    return seen.summary["status"].upper() + (" with saved state" if seen.summary["stateful"]
                                             else "")  # fmt: skip


def remove_stray(sides: Sides, target: Seen) -> str:
    """The target's copy is not the container: remove it, stopping it first if it runs."""
    host, operation = sides.target.host, sides.target.operation
    if not target.answered:
        aftercare.add(operation, host, sides.new_name, aftercare.STRAY)
        return (
            f"Any partial copy on {host.name} (its LXD does not answer) is removed once it "
            "answers again; the panel asks every minute."
        )
    if target.summary is None:
        return f"{host.name} has no copy left."
    return remove_copy(sides.target, sides.new_name, target)


def remove_copy(tracker: Tracker, name: str, seen: Seen) -> str:
    """Delete a stray copy (force-stopping it first if it runs); the words say what was done."""
    host = tracker.host.name
    ran = seen.status == "Running"
    try:
        if seen.status not in ("Stopped", "Gone"):
            tracker.follow(
                lxd.start_state_change(tracker.target, name, "stop", force=True, timeout=30)
            )
        state = tracker.follow(lxd.start_delete_instance(tracker.target, name))
    except lxd.LXDError as error:
        aftercare.add(tracker.operation, tracker.host, name, aftercare.STRAY)
        return f"The copy on {host} could not be removed yet ({error}); the panel tries again."
    if state is not None and state.status != "Success":
        aftercare.add(tracker.operation, tracker.host, name, aftercare.STRAY)
        return f"The copy on {host} could not be removed yet ({state.error}); the panel retries."
    tracker.note_gone(name)
    tracker.operation.log(f"Removed the copy on {host}.", "reconciling")
    if ran:
        return (
            f"A copy had started on {host} from the abandoned migration: the panel stopped and "
            "removed it, so the container runs in one place only."
        )
    return f"Removed the partial copy on {host}."


def seen_running_words(sides: Sides, source: Seen) -> OperationFailed:
    """The target went silent after the container was seen running there: it lives there,
    unverified; the source copy is kept until the target is verified."""
    target_host, source_host = sides.target.host, sides.source.host
    operation = sides.source.operation
    aftercare.add(operation, target_host, sides.new_name, aftercare.HOME)
    aftercare.add(operation, source_host, sides.name, aftercare.LEFT_BEHIND)
    when = timezone.localtime().strftime("%H:%M:%S")
    return OperationFailed(
        f"The container was seen RUNNING on {target_host.name}, then {target_host.name}'s LXD "
        f"stopped answering (by {when}), before the panel could verify it. Its copy on "
        f"{source_host.name} ({describe(source) if source.answered else 'unknown'}) is kept "
        f"until {target_host.name} is verified: the panel asks every minute, then removes it.",
        "",
        f"on {target_host.name}, RUNNING when last seen (its LXD does not answer)",
    )


def undecided_words(sides: Sides, source: Seen) -> OperationFailed:
    """The target went silent while starting the moved copy: which copy is the container is
    decided once it answers (aftercare); until then the source's copy waits, stopped."""
    target_host, source_host = sides.target.host, sides.source.host
    aftercare.add(sides.source.operation, target_host, sides.new_name, aftercare.DECIDE)
    saved = " with its saved state" if sides.strategy == "stateful_move" else ""
    return OperationFailed(
        f"{target_host.name}'s {target_host.platform.name} stopped answering while it started "
        f"the moved copy, which may have started without the panel seeing it. So that the "
        f"container never runs twice, its original stays STOPPED{saved} on {source_host.name} "
        f"until {target_host.name} answers: then the panel keeps the copy that runs, or starts the "
        f"original again and removes the other (it asks every minute). If {target_host.name} "
        f"is gone for good, start the container on {source_host.name} yourself.",
        "",
        f"on {source_host.name}, {describe(source) if source.answered else 'unknown'} "
        f"(a copy on {target_host.name} may have started)",
    )
