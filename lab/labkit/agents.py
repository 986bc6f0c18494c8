"""The panel's host agent, run for a lab host as it would run on a real one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from urllib.parse import urlsplit

from .base import BIN, REPO, LabError, process_alive
from .host import Host


def start_agent(host: Host, python: str, redis_url: str) -> str:
    """The panel's host agent (workers/agent.py) for one lab host, as it would run on a real
    host: inside the host's mount namespace, so /var/lib/lxd and /var/log/lxd (on an Incus
    host /var/lib/incus and /var/log/incus) are that host's trees, but in the root network
    namespace, where Redis answers on 127.0.0.1. dmesg and uname are machine-wide here anyway
    (all lab hosts share one kernel)."""
    stop_agent(host)
    daemon = host.pid()
    if not process_alive(daemon, host.daemon):
        raise LabError(f"{host.name}: {host.daemon} is not running; run `lab.py up` first")
    env = {
        **os.environ,
        "PANEL_REDIS_URL": redis_url,
        "PANEL_AGENT_LAYOUT": host.agent_layout,  # "debian" (LXD) or "incus"
        # The lab's daemons use the shim (CRIU 4.1.1, or stock per host); the agent checks that.
        "PANEL_AGENT_CRIU": str(BIN / "criu"),
        "PYTHONUNBUFFERED": "1",
    }
    with open(host.tree / "agent.log", "ab") as out:
        # nsenter execs (no --fork): the recorded PID is the agent's own.
        agent = subprocess.Popen(
            [
                "nsenter",
                f"--mount=/proc/{daemon}/ns/mnt",
                f"--wd={REPO}",  # entering a mount namespace resets the working directory
                "--",
                os.path.abspath(python),
                "-m",
                "workers.agent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    host.agent_pid_file.write_text(f"{agent.pid}\n")
    time.sleep(0.5)
    if agent.poll() is not None:
        tail = (host.tree / "agent.log").read_text(errors="replace").splitlines()[-10:]
        raise LabError(f"{host.name}: the agent exited at once:\n" + "\n".join(tail))
    parts = urlsplit(redis_url)  # shown without the agent's Redis password
    shown = parts._replace(netloc=f"{parts.hostname}:{parts.port or 6379}").geturl()
    return f"{host.name}: agent pid {agent.pid} on {shown} (log {host.tree / 'agent.log'})"


def stop_agent(host: Host) -> str:
    pid = host.agent_pid()
    host.agent_pid_file.unlink(missing_ok=True)
    if not process_alive(pid):
        return f"{host.name}: no agent running"
    os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
    return f"{host.name}: agent {pid} stopped"
