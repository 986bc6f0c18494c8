"""Stopping hosts: by PID, never by name, thawing frozen tasks first; and what they leave."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .base import HOSTS_DIR, LAB, NETNS_PREFIX, LabError, process_alive, run
from .host import HOST_KINDS, Host, host_named
from .network import link_exists


def ns_inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def host_processes(host: Host) -> set[int]:
    """The daemon, every process in its network or mount namespace, and their descendants.

    LXD's container monitors are forked by the daemon and stay in its namespaces; a container's
    init (also after a CRIU restore, as --restore-sibling) is a child of its monitor.
    """
    found: set[int] = set()
    daemon = host.pid()
    net_ino = ns_inode(host.netns_path)
    alive = process_alive(daemon, host.daemon)
    mnt_ino = ns_inode(f"/proc/{daemon}/ns/mnt") if alive else None
    if alive:
        found.add(daemon)  # type: ignore[arg-type]
    own_mnt = ns_inode("/proc/self/ns/mnt")
    for pid in all_pids():
        if pid == os.getpid():
            continue
        net = ns_inode(f"/proc/{pid}/ns/net")
        mnt = ns_inode(f"/proc/{pid}/ns/mnt")
        if (net_ino is not None and net == net_ino) or (
            mnt_ino is not None and mnt == mnt_ino and mnt != own_mnt
        ):
            found.add(pid)
    parents = {pid: parent_of(pid) for pid in all_pids()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def thaw(pid: int) -> None:
    # A task in a frozen cgroup v1 freezer ignores SIGKILL until thawed (a stuck migration
    # leaves its container frozen).
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            state = Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
            try:
                if state.read_text().strip() != "THAWED":
                    state.write_text("THAWED\n")
            except OSError:
                pass


def stop_host_processes(host: Host) -> int:
    victims = host_processes(host)
    daemon = host.pid()
    # The daemon first, so it cannot restart or reconnect anything while the rest goes.
    order = ([daemon] if daemon in victims else []) + sorted(victims - {daemon})
    for pid in order:
        thaw(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # `lxd shutdown` hangs on a stuck operation
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(process_alive(p) for p in victims):
        for pid in victims:
            thaw(pid)
        time.sleep(0.1)
    left = [p for p in victims if process_alive(p)]
    if left:
        raise LabError(f"{host.name}: processes did not die: {left}")
    reaper = host.reaper_pid()
    if process_alive(reaper):
        # It exits by itself once its tree is gone; give it a moment, then insist.
        deadline = time.monotonic() + 2
        while process_alive(reaper) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(reaper):
            os.kill(reaper, signal.SIGKILL)  # type: ignore[arg-type]
    return len(victims)


def remove_stale_cgroups(names: set[str]) -> int:
    """Remove the empty cgroups liblxc leaves behind (lxc.payload.<name>, lxc.monitor.<name>).

    Those of the lab's current containers always; when no LXD or Incus daemon runs at all, also
    those of
    deleted containers (liblxc leaks some in the unified hierarchy after restores) and its
    shared scratch cgroup lxc.pivot. rmdir only ever succeeds on an empty cgroup.
    """
    daemons = {kind.daemon for kind in HOST_KINDS.values()}
    no_lxd_runs = not any(process_alive(pid, d) for pid in all_pids() for d in daemons)

    def ours(folder: Path) -> bool:
        kind, _, name = folder.name.partition(".")[2].partition(".")
        if kind not in ("payload", "monitor") or not name:
            return folder.name == "lxc.pivot" and no_lxd_runs
        return no_lxd_runs or name in names or name.rsplit("-", 1)[0] in names

    removed = 0
    root = Path("/sys/fs/cgroup")
    for hierarchy in (p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for top in hierarchy.glob("lxc.*"):
            if not top.is_dir() or not ours(top):
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
                removed += 1
    return removed


def lab_mounts() -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(str(LAB)):
            mounts.append(point)
    return mounts


def known_hosts() -> list[Host]:
    """Every host, LXD and Incus, that left a tree or a network namespace, up or not."""
    found: dict[str, Host] = {}
    names = [tree.name for tree in HOSTS_DIR.iterdir()] if HOSTS_DIR.is_dir() else []
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        names += [ns.name.removeprefix(NETNS_PREFIX) for ns in netns_dir.iterdir()]
    for name in names:
        host = host_named(name)
        if host is not None:
            found[host.name] = host
    return sorted(found.values(), key=lambda h: (h.kind != "lxd", h.index))


def take_down(host: Host) -> str:
    killed = stop_host_processes(host)
    if link_exists(host.veth):
        run(["ip", "link", "del", host.veth])
    if host.netns_path.exists():
        run(["ip", "netns", "del", host.netns])
    for stale in (host.pid_file, host.reaper_pid_file, host.socket):
        stale.unlink(missing_ok=True)
    return f"{host.name}: stopped ({killed} processes)"


def container_names(hosts: list[Host]) -> set[str]:
    names = set()
    for host in hosts:
        folder = host.lib / "containers"
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir())
    return names
