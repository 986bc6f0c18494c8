"""Faults with real processes on the lab, for the fault tests and bench/fault_matrix.py: kill a
host's LXD daemon and bring it back, cut a host's link and restore it, follow an operation to
the phase where a fault is wanted. Every fault is undone by `restore_lab` (call it in a
`finally`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_PY = str(ROOT / "lab" / "lab.py")


def lab_state() -> dict:
    default = ROOT / "var" / "lab" / "state.json"
    return json.loads(Path(os.environ.get("PANEL_LAB_STATE", default)).read_text())


def lab_daemon_pid(host_name: str) -> int:
    return next(h["pid"] for h in lab_state()["hosts"] if h["name"] == host_name)


def kill_daemon(host_name: str) -> None:
    """SIGKILL the host's LXD daemon, as a crash would (its containers keep running)."""
    os.kill(lab_daemon_pid(host_name), signal.SIGKILL)


def veth(host_name: str) -> str:
    """The root-namespace end of the host's link to the lab bridge (lab/labkit/host.py)."""
    return "lxdlab-h" + host_name.removeprefix("host")


def cut_link(host_name: str) -> None:
    subprocess.run(["ip", "link", "set", veth(host_name), "down"], check=True)


def mend_link(host_name: str) -> None:
    subprocess.run(["ip", "link", "set", veth(host_name), "up"], check=True)


def restore_lab(redis_url: str, agents: bool, host: str = "") -> None:
    """Every link up, every daemon running (`lab.py up` restarts the dead ones) and, when the
    test uses them, the agents started again in the daemons' new mount namespaces (only
    `host`'s, when given: the others may be answering the panel right now)."""
    for lab_host in lab_state()["hosts"]:
        with contextlib.suppress(subprocess.CalledProcessError):
            mend_link(lab_host["name"])
    subprocess.run(["python3", LAB_PY, "up"], check=True, capture_output=True)
    if agents:
        only = ["--host", host] if host else []
        subprocess.run(["python3", LAB_PY, "agents", "start", *only, "--python", sys.executable,
                        "--redis-url", redis_url], check=True, capture_output=True)  # fmt: skip


def wait_for_stage(operation_id: int, stages: tuple[str, ...], timeout: float = 120) -> str:
    """Poll the row until the operation reaches one of `stages` (or ends); the stage seen."""
    from panel.models import Operation

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Operation.objects.filter(pk=operation_id).values("stage", "status").first()
        if row and (row["stage"] in stages or row["status"] not in Operation.ACTIVE):
            return row["stage"]
        time.sleep(0.02)
    raise AssertionError(f"operation #{operation_id} never reached {stages}")


def dumps_holding(name: str) -> list[int]:
    """PIDs of `criu dump` processes of the container, anywhere on the machine (checking the
    truth only; the panel's agent finds them per host, workers/dumps.py)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        cgroup = f"/lxc.payload.{name}".encode()
        if b"dump" in argv and any(arg.endswith(cgroup) for arg in argv):
            found.append(int(proc.name))
    return found
