"""A live migration's CRIU dump left waiting on the source, and how it is ended.

LXD 5.0.2 runs the dump with an action script whose `lxd migratedumpsuccess` waits on a
"Live-migrating instance" operation of the source until the target has restored. When the
target fails, dies or cannot be reached, that wait never ends: the container stays frozen
under CRIU while LXD reports it Running (`lxc exec` fails, `lxc delete --force` hangs). LXD's
API cannot end it (that operation cannot be cancelled); the host's agent can, by ending
exactly the process that waits (workers/dumps.py): CRIU then aborts the dump and the container
goes on running with the same processes (LAB.md section 10). LXD itself keeps listing its
"Live-migrating instance" operation as running until the daemon restarts: harmless.

A dump is recognised as stuck, not merely slow, when its operation still runs although the
migration can no longer finish: the source's side of the migration has ended, or the target
does not answer (after the peer wait). Without an agent, the outcome names the operation and
the one command that frees the container.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from panel import lxd
from panel.hosts.agents import stuck_dump
from panel.operations.models import Operation
from panel.operations.runner import OperationFailed, Tracker

# LXD creates this operation on the source when CRIU's final dump starts; it runs until the
# target has restored (or forever, when the target's side never reports).
DUMP_OPERATION = "Live-migrating instance"
THAW_WAIT_SECONDS = 10.0


def running_dumps(tracker: Tracker) -> set[str]:
    return lxd.running_operations(tracker.target, DUMP_OPERATION)


def still_waiting(tracker: Tracker, dump_operations: list[str]) -> list[str]:
    """Which of this migration's dump operations LXD still runs on the source."""
    if not dump_operations:
        return []
    return sorted(set(dump_operations) & running_dumps(tracker))


def init_held(tracker: Tracker, name: str) -> bool:
    """A second look, for a dump whose LXD operation the panel did not see: LXD says Running
    while a tracer (CRIU) holds init, and `exec` then fails to find the child's PID."""
    try:
        state = lxd.container_init_state(tracker.target, name)
    except lxd.LXDUnreachable:
        raise
    except lxd.LXDError as error:
        tracker.operation.log(f"Could not read the container's init state: {error}",
                              "reconciling")  # fmt: skip
        return "retrieve pid" in str(error).lower()
    return state.startswith("t")


def manual_command(dump_operation: str) -> str:
    """What an admin runs on the source host to free the container: end the one process
    that waits on this operation (its id is in the process's arguments)."""
    return f"kill -TERM $(pgrep -f 'migratedumpsuccess /1.0/operations/{dump_operation} ')"


@dataclass
class Release:
    """What ending a stuck dump did: `freed` when CRIU let go of the container."""

    freed: bool
    words: str
    init_pid: int | None = None


def release(tracker: Tracker, name: str, how: str, dump_operations: list[str]) -> Release:
    """End the container's stuck dump through the host's agent: "resume" (it goes on running
    with the same processes) or "stop" (only where the container already runs elsewhere)."""
    tracker.check_owned()  # the agent acts on the host: only for an operation this worker owns
    host = tracker.host.name
    reply, why = stuck_dump(tracker.host, name, how)
    known = [operation for operation in dump_operations if operation != "unknown"]
    waiting = ", ".join(known) or "not seen by the panel"
    if reply is None:
        command = manual_command(known[0]) if known else (
            f"kill -TERM <the `lxd migratedumpsuccess` child of `criu dump ... "
            f"lxc.payload.{name}`'s action script>"
        )  # fmt: skip
        words = (
            f"CRIU's dump still holds the container on {host} (LXD operation {waiting} "
            f"waits for a migration that cannot finish), and the panel could not free it: "
            f"{why}. On {host}, as root: `{command}`; the container then goes on running "
            "there with the same processes."
        )
        tracker.operation.log(words, "reconciling")
        return Release(False, words)
    actions = [action for action in reply["actions"] if action.get("ended")]
    for action in reply["actions"]:
        tracker.operation.log(f"The agent on {host}: {describe_action(action)}", "reconciling")
    if not reply["holds"]:
        return Release(True, f"No CRIU dump holds the container on {host} any more.")
    if not actions:
        return Release(False, f"The agent found CRIU's dump on {host} but could not end it: "
                       + "; ".join(a.get("why", "") for a in reply["actions"]))  # fmt: skip
    init_pid = reply["holds"][0]["init_pid"]
    if how == "resume" and not thawed(tracker, name):
        return Release(False, f"The agent ended the dump's wait on {host}, but the container's "
                       "init is still held: check the host.", init_pid)  # fmt: skip
    done = "it goes on running" if how == "resume" else "it stopped"
    return Release(True, f"The panel freed the container from CRIU's dump on {host}: {done}.",
                   init_pid)  # fmt: skip


def describe_action(action: dict) -> str:
    if not action.get("ended"):
        return f"did not end the dump of CRIU {action['criu_pid']}: {action.get('why', '')}"
    return (
        f"sent {action['signal']} to {' '.join(action['argv'][:2])} (pid {action['ended']}, "
        f"under CRIU {action['criu_pid']}); CRIU "
        + ("exited" if action["criu_exited"] else "has not exited yet")
        + f"; the container's init is now {action['init_state']!r}."
    )


def thawed(tracker: Tracker, name: str) -> bool:
    """After a release: the container's init runs again (not in tracing stop)."""
    deadline = time.monotonic() + THAW_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            state = lxd.container_init_state(tracker.target, name)
        except lxd.LXDUnreachable:
            raise
        except lxd.LXDError:  # exec fails while CRIU still holds it
            state = ""
        if state and not state.startswith("t"):
            tracker.operation.log(f"The container's init is in state {state!r}.", "reconciling")
            return True
        time.sleep(0.5)
    return False


def free_from_dump(operation: Operation) -> str:
    """The operation that frees a container from its migration's stuck dump, asked by the
    aftercare or with one click on the failed migration's page."""
    tracker, name = Tracker(operation), operation.instance_name
    tracker.enter("releasing", f"Looking for CRIU's dump of {name} on {tracker.host.name}.")
    waiting = still_waiting(tracker, operation.params.get("dump_operations", []))
    released = release(tracker, name, "resume", waiting)
    summary = tracker.summary(name)
    state = (summary or {}).get("status", "gone").upper()
    if not released.freed:
        raise OperationFailed(released.words, state_after=f"{state}, held by a stuck CRIU dump")
    return f"{released.words} The container is {state} on {tracker.host.name}."
