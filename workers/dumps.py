"""A live migration's stuck CRIU dump on this host: find it by its place in the process tree,
and end exactly the one process that frees the container (LAB.md section 10).

During a live migration LXD 5.0.2 runs `criu dump -t <container init> --action-script
<dir>/action.sh ...`. At post-dump that script runs `lxd migratedumpsuccess
/1.0/operations/<id> <secret>`, which waits until the target has restored the container. When
the target dies or the link is cut that wait never ends, and CRIU holds the container frozen:

    criu dump ... -t <init pid> ... --action-script <dir>/action.sh
      `- sh -e <dir>/action.sh
           `- lxd migratedumpsuccess /1.0/operations/<id> <secret>

- resume: SIGTERM to that `migratedumpsuccess` only. The action script fails, CRIU aborts the
  dump and thaws the tasks: the container goes on running with the same processes.
- stop: SIGKILL to CRIU itself. The container stops (its running state is lost); only for a
  source copy whose container already runs on the target.

Every process is recognised by its arguments, its parent and the container's cgroup, and must
live in this host's mount namespace (two lab hosts share one PID namespace): never by a name
alone. Nothing here takes a path or a command from the panel.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROC = Path("/proc")
HOW = ("inspect", "resume", "stop")
EXIT_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    argv: tuple[str, ...]
    started_ticks: int


@dataclass
class Hold:
    """One container held by a CRIU dump, and the process that keeps it waiting."""

    criu_pid: int
    init_pid: int
    action_script: str
    script_pid: int | None
    waiter_pid: int | None  # `lxd migratedumpsuccess ...`, when the script waits in it
    waiter_operation: str  # its first argument: /1.0/operations/<id>
    waiting_seconds: float | None


def read_process(proc: Path, pid: int) -> Process | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces: the fields follow the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return Process(pid, int(fields[1]), argv, int(fields[19]))


def processes(proc: Path = PROC) -> dict[int, Process]:
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            process = read_process(proc, int(entry.name))
            if process is not None:
                found[process.pid] = process
    return found


def criu_dump(argv: tuple[str, ...]) -> tuple[int, str] | None:
    """(init pid, action script) when argv runs `criu dump` (directly, through a loader or
    the lab's shim), else None."""
    for index, arg in enumerate(argv[:-1]):
        if os.path.basename(arg) == "criu" and argv[index + 1] == "dump":
            options = argv[index + 2 :]
            tree, script = _option(options, "-t", "--tree"), _option(options, "", "--action-script")
            if tree is not None and tree.isdigit():
                return int(tree), script or ""
    return None


def _option(options: tuple[str, ...], short: str, long: str) -> str | None:
    for index, arg in enumerate(options):
        if arg in (short, long) and index + 1 < len(options):
            return options[index + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def in_container(proc: Path, pid: int, name: str) -> bool:
    """The process's cgroup is the container's (`.../lxc.payload.<name>[/...]`)."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return False
    wanted = f"lxc.payload.{name}"
    return any(wanted in line.split(":", 2)[-1].split("/") for line in lines)


def on_this_host(proc: Path, pid: int) -> bool:
    try:
        return (proc / str(pid) / "ns" / "mnt").stat().st_ino == (
            proc / "self" / "ns" / "mnt"
        ).stat().st_ino
    except OSError:
        return False


def seconds_since_start(proc: Path, process: Process) -> float | None:
    try:
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - process.started_ticks / os.sysconf("SC_CLK_TCK"), 1)


def children(table: dict[int, Process], pid: int) -> list[Process]:
    return [process for process in table.values() if process.ppid == pid]


def find_holds(name: str, proc: Path = PROC) -> list[Hold]:
    """Every CRIU dump of container `name` on this host, with its waiting action script."""
    table = processes(proc)
    holds = []
    for process in table.values():
        dump = criu_dump(process.argv)
        if dump is None:
            continue
        init_pid, script = dump
        if not (on_this_host(proc, process.pid) and in_container(proc, init_pid, name)):
            continue
        scripts = [c for c in children(table, process.pid) if script and c.argv[-1:] == (script,)]
        script_pid = scripts[0].pid if scripts else None
        waiters = [
            c for c in (children(table, script_pid) if script_pid else [])
            if len(c.argv) >= 3 and os.path.basename(c.argv[0]) == "lxd"
            and c.argv[1] == "migratedumpsuccess"
        ]  # fmt: skip
        waiter = waiters[0] if waiters else None
        holds.append(
            Hold(
                criu_pid=process.pid,
                init_pid=init_pid,
                action_script=script,
                script_pid=script_pid,
                waiter_pid=waiter.pid if waiter else None,
                waiter_operation=waiter.argv[2] if waiter else "",
                waiting_seconds=seconds_since_start(proc, waiter) if waiter else None,
            )
        )
    return holds


def init_state(proc: Path, pid: int) -> str:
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return "gone"
    return next((ln.split(":", 1)[1].strip() for ln in status.splitlines()
                 if ln.startswith("State:")), "")  # fmt: skip


def still_in_place(proc: Path, hold: Hold, how: str) -> Process | None:
    """The process to end, read again right before the signal: still at its place in the
    tree (a pid reused by another process since would not be)."""
    if how == "resume":
        process = read_process(proc, hold.waiter_pid) if hold.waiter_pid else None
        in_place = (process is not None and process.ppid == hold.script_pid
                    and process.argv[1:2] == ("migratedumpsuccess",))  # fmt: skip
    else:
        process = read_process(proc, hold.criu_pid)
        in_place = process is not None and (criu_dump(process.argv) or (0,))[0] == hold.init_pid
    return process if in_place else None


def end_holds(name: str, how: str, proc: Path = PROC) -> dict:
    """Find the container's dumps and, unless `how` is "inspect", end them as asked: the
    report says what was found, what was signalled, and what became of CRIU and init."""
    if how not in HOW:
        return {"holds": [], "actions": [], "refused": f"unknown action {how[:20]!r}"}
    holds = find_holds(name, proc)
    actions: list[dict] = []
    for hold in holds if how != "inspect" else []:
        if how == "resume" and hold.waiter_pid is None:
            actions.append(
                {
                    "criu_pid": hold.criu_pid,
                    "ended": None,
                    "why": "CRIU is not waiting in its action script (still dumping)",
                }
            )
            continue  # fmt: skip
        process = still_in_place(proc, hold, how)
        if process is None:
            actions.append({"criu_pid": hold.criu_pid, "ended": None, "why": "it ended by itself"})
            continue
        sent = signal.SIGTERM if how == "resume" else signal.SIGKILL
        os.kill(process.pid, sent)
        exited = wait_gone(proc, hold.criu_pid)
        actions.append({"criu_pid": hold.criu_pid, "ended": process.pid, "signal": sent.name,
                        "argv": list(process.argv[:3]), "criu_exited": exited,
                        "init_state": init_state(proc, hold.init_pid)})  # fmt: skip
    return {"holds": [asdict(hold) for hold in holds], "actions": actions, "refused": ""}


def wait_gone(proc: Path, pid: int) -> bool:
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while time.monotonic() < deadline:
        state = init_state(proc, pid)
        if state == "gone" or state.startswith("Z"):
            return True
        time.sleep(0.1)
    return False
