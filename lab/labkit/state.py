"""var/lab/state.json, the lab's contract with the project (lab/README.md, "The contract")."""

from __future__ import annotations

import json

from .base import BRIDGE, BRIDGE_ADDRESS, IMAGE_ALIAS, STATE_FILE
from .host import Host, host_named


def write_state(hosts: list[Host]) -> dict:
    """`hosts`: the LXD hosts, as ever; `incus_hosts`: the Incus hosts (a list, maybe empty)."""
    state = {
        "hosts": [h.as_state() for h in hosts if h.kind == "lxd"],
        "incus_hosts": [h.as_state() for h in hosts if h.kind == "incus"],
        "image_alias": IMAGE_ALIAS,
        "bridge": BRIDGE,
        "bridge_address": BRIDGE_ADDRESS,
    }
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(STATE_FILE)
    return state


def read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def state_hosts() -> list[Host]:
    """The hosts state.json names: the LXD hosts first, then the Incus hosts."""
    state = read_state()
    if not state:
        return []
    entries = state["hosts"] + state.get("incus_hosts", [])
    return [host for host in (host_named(e["name"]) for e in entries) if host is not None]
