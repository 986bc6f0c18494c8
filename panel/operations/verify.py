"""Is a moved container really running on the target? Its status alone does not say.

Both ends of a migration can report success while the target's restore failed: LXD 5.0.2
to Incus 6.0.4, the lab saw both operations end Success, the source copy STOPPED and the
target's restore failed in CRIU (LAB.md section 9). LXD 5.0.2 also reports Running while a
stuck CRIU dump holds a container's tasks. So a migration is verified by what runs: the
target's init PID and process count from the instance's live state, and init's own state
read inside the container (not 't', held by a tracer). On every platform pair, every
strategy that promises a running container.
"""

from __future__ import annotations

import time

from panel import lxd

# Right after a restore the exec helper of LXD 5.0.2 sometimes answers an error for a
# moment (tests/lab_tools.py: read_file); a real failure stays.
INIT_READ_TRIES = 3


def running_for_real(target: lxd.Target, name: str) -> tuple[str, dict]:
    """('' and the evidence) when the container runs for real, else (what is wrong, the
    evidence so far)."""
    try:
        state = lxd.instance_state(target, name)
    except lxd.LXDError as error:
        return f"its live state cannot be read ({error})", {}
    evidence: dict = dict(state)
    if state["status"] != "Running":
        return f"it is {state['status'].upper() or 'in no state'}", evidence
    if state["pid"] <= 0:
        return "it has no init process (PID 0)", evidence
    if state["processes"] <= 0:
        return "no process runs in it", evidence
    init, problem = read_init_state(target, name)
    evidence["init_state"] = init
    if problem:
        return problem, evidence
    if init.startswith(("t", "T")):
        return f"its init is stopped, held by a tracer ({init})", evidence
    if init.startswith(("Z", "X")):
        return f"its init is dead ({init})", evidence
    return "", evidence


def read_init_state(target: lxd.Target, name: str) -> tuple[str, str]:
    """(init's State: line, '' or why it cannot be read)."""
    error: lxd.LXDError | None = None
    for attempt in range(INIT_READ_TRIES):
        try:
            return lxd.container_init_state(target, name), ""
        except lxd.LXDError as failure:
            error = failure
            if attempt + 1 < INIT_READ_TRIES:
                time.sleep(0.3)
    return "", f"nothing answers inside it ({error})"


def evidence_words(evidence: dict) -> str:
    """The evidence as the operation's log says it."""
    return (
        f"init PID {evidence.get('pid', '?')}, {evidence.get('processes', '?')} processes, "
        f"init state {evidence.get('init_state') or '?'}"
    )
