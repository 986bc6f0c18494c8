"""The host agent: a Celery worker started ON an LXD or Incus host, consuming that host's own
queue.

It gathers what only the host has (dmesg, host mountinfo, uname, the daemon's log (lxd.log,
incus.log), lxd-bridge on LXD, the instance's log directory, checkpoint images, CRIU's
statistics and `criu check`) with a fixed, read-only set of collectors; and it frees a
container held by a live migration's stuck CRIU dump (workers/dumps.py), the one thing it
changes. No task takes a command or a path, only an instance name checked against LXD's
naming rule. Replies travel back through the result backend (panel/settings.py says why that
is the one use of it). How to run it on a host: docs/agent.md.

    python -m workers.agent        # works out its queue from the LXD server certificate
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from kombu import Exchange, Queue

from panel.hosts.agent_access import queue_for
from panel.lxd.platforms import Platform, platform_named
from workers import dumps
from workers.celery import app

# LXD's own rule for instance and snapshot names; anything else is refused, so a name can
# never walk out of the directories below ("../etc").
LXD_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.+-]{0,61}[A-Za-z0-9])?$")
COMMAND_TIMEOUT = 20
COMMAND_MAX_BYTES = 256 * 1024  # criu check, crit, uname; dmesg gets the item cap
MAX_LISTED_FILES = 500


def host_items_of(platform: Platform) -> list[tuple[str, str]]:
    """The host-level items, in the order report readers look for them: (file in the bundle,
    where it comes from). Both sides use this list, so a silent agent still yields every row.
    LXD 2.x's lxd-bridge, which the announcement asks for, means nothing on Incus."""
    log = platform.daemon_logs[0]
    items = [
        ("dmesg.txt", "agent: dmesg"),
        ("mountinfo.txt", "agent: /proc/self/mountinfo of the host"),
        ("uname.txt", "agent: uname -a"),
        (log, f"agent: {platform.name}'s {log}"),
    ]
    if platform.bridge_file:
        items.append(("lxd-bridge", f"agent: {platform.bridge_file}"))
    return [*items, ("criu-check.txt", "agent: criu --version; criu check")]


def instance_log_dir_item(platform: Platform) -> tuple[str, str]:
    """The bundle folder of the instance's log directory (/var/log/lxd/<name>/ on LXD)."""
    return f"var-log-{platform.key}", "agent: the instance's log directory"


def own_platform() -> Platform:
    """The platform this agent runs beside, from its layout (PANEL_AGENT_LAYOUT)."""
    return platform_named(settings.AGENT_PLATFORM)


def valid_name(name: str) -> bool:
    return bool(LXD_NAME.match(name)) and ".." not in name


def run(command: list[str], max_bytes: int = COMMAND_MAX_BYTES) -> tuple[int, str, bool]:
    """One of the agent's fixed commands: (exit status, the end of its stdout and stderr,
    whether that was cut). Output is capped while it is read (a flooded dmesg never sits
    whole in memory) and the command is killed at COMMAND_TIMEOUT."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        return 127, f"{command[0]}: not found on this host", False
    kept, cut = bytearray(), False
    deadline = time.monotonic() + COMMAND_TIMEOUT
    with process:
        assert process.stdout is not None  # PIPE was asked for
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                return 124, f"{' '.join(command)}: no answer within {COMMAND_TIMEOUT} s", cut
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            chunk = os.read(process.stdout.fileno(), 65536) if ready else None
            if chunk == b"":
                break
            kept += chunk or b""
            if len(kept) > max_bytes:
                del kept[: len(kept) - max_bytes]
                cut = True
        status = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    return status, kept.decode(errors="replace"), cut


def read_tail(path: Path, max_bytes: int) -> tuple[str | None, bool, str]:
    """(text or None, truncated, reason): the end of the file, where errors are, reading at
    most `max_bytes` of a regular file and keeping at most that much of a /proc one."""
    try:
        with path.open("rb") as handle:
            try:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - max_bytes))
                data = handle.read(max_bytes)
                cut = size > max_bytes
            except OSError:  # /proc files cannot seek from their end: keep a rolling tail
                data, cut = _rolling_tail(handle, max_bytes)
    except FileNotFoundError:
        return None, False, f"{path} does not exist on this host"
    except OSError as error:
        return None, False, f"{path} could not be read: {error.strerror}"
    return data.decode(errors="replace"), cut, ""


def _rolling_tail(handle, max_bytes: int) -> tuple[bytes, bool]:
    kept, cut = bytearray(), False
    while chunk := handle.read(65536):
        kept += chunk
        if len(kept) > max_bytes:
            del kept[: len(kept) - max_bytes]
            cut = True
    return bytes(kept), cut


class Budget:
    """What one collection may still send back: every item is read within what is left, so
    a host with a huge log folder answers with a bounded reply, and says what it left out."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = self.left = total_bytes

    def cap(self, max_bytes: int) -> int:
        return max(0, min(max_bytes, self.left))

    def spend(self, text: str | None) -> None:
        self.left -= len(text.encode()) if text else 0

    @property
    def spent_out(self) -> str:
        return f"not read: the agent's total cap ({self.total_bytes} bytes) was reached"


def item(name: str, source: str, content: str | None, reason: str = "", truncated=False,
         truncation: str = ""):  # fmt: skip
    return {"name": name, "source": source, "content": content, "reason": reason,
            "truncated": truncated, "truncation": truncation}  # fmt: skip


def file_item(name: str, path: Path, max_bytes: int, budget: Budget) -> dict:
    """A file's end, read within the item cap and what the collection has left."""
    source = f"agent: {path}"
    limit = budget.cap(max_bytes)
    if limit == 0:
        return item(name, source, None, budget.spent_out)
    text, cut, reason = read_tail(path, limit)
    budget.spend(text)
    why = "item cap" if limit == max_bytes else "the agent's total cap"
    return item(name, source, text, reason, cut,
                f"the agent kept the last {limit} bytes ({why})" if cut else "")  # fmt: skip


def facts() -> dict:
    """What capabilities need from the host: `criu check`, CPU flags, uname, CRIU's version."""
    status, output, _ = run([settings.AGENT_CRIU, "check"])
    dirty, dirty_output, _ = run([settings.AGENT_CRIU, "check", "--feature", "mem_dirty_track"])
    _, version, _ = run([settings.AGENT_CRIU, "--version"])
    _, uname, _ = run(["uname", "-a"])
    return {
        "criu_check": {"ok": status == 0, "output": output.strip()[-2000:]},
        # LXD's incremental memory pre-copy needs it; without it LXD silently does one dump.
        "mem_dirty_track": {"ok": dirty == 0, "output": dirty_output.strip()[-500:]},
        "criu_version": version.strip().splitlines()[0] if version.strip() else "",
        "cpu_flags": cpu_flags(),
        "uname": uname.strip(),
        "agent_answered_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def cpu_flags() -> list[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(flags)


def daemon_log(platform: Platform) -> Path:
    """The server's own log: the first of the platform's names that exists (Debian's Incus
    writes incus.log, other setups incusd.log), else the first name."""
    folder = Path(settings.AGENT_LOG_DIR)
    found = [folder / name for name in platform.daemon_logs if (folder / name).is_file()]
    return found[0] if found else folder / platform.daemon_logs[0]


def host_items(max_bytes: int, found: dict, budget: Budget) -> list[dict]:
    """The host_items_of() this platform, in that order, within the caps; a missing one says
    why."""
    platform = own_platform()
    sources = dict(host_items_of(platform))
    limit = budget.cap(max_bytes)
    status, dmesg, dmesg_cut = run(["dmesg"], limit) if limit else (0, "", False)
    budget.spend(dmesg)
    failed = "" if status == 0 else f"dmesg exited {status}: {dmesg.strip()[:200]}"
    kept = f"the agent kept the last {limit} bytes" if dmesg_cut else ""
    log_path = daemon_log(platform)
    items = [
        item("dmesg.txt", sources["dmesg.txt"], None if failed else dmesg, failed, dmesg_cut,
             kept),
        file_item("mountinfo.txt", Path("/proc/self/mountinfo"), max_bytes, budget),
        item("uname.txt", sources["uname.txt"], found["uname"] + "\n"),
        file_item(log_path.name, log_path, max_bytes, budget),
    ]  # fmt: skip
    if "lxd-bridge" in sources:
        bridge_file = Path(settings.AGENT_LXD_BRIDGE_FILE or platform.bridge_file)
        bridge = file_item("lxd-bridge", bridge_file, max_bytes, budget)
        if bridge["content"] is None:
            bridge["reason"] += " (expected with LXD 3.0 and later, which manage their bridge)"
        items.append(bridge)
    check = found["criu_check"]
    criu = f"$ criu --version\n{found['criu_version']}\n\n$ criu check\n{check['output']}\n"
    return [*items, item("criu-check.txt", sources["criu-check.txt"], criu)]


def instance_log_dir(name: str, max_bytes: int, budget: Budget) -> list[dict]:
    """The files of /var/log/lxd/<name>/ (the tarball the announcement asks for; Incus keeps
    the same in /var/log/incus/<name>/), newest first, within the caps; what is left out is
    listed, each with why."""
    folder = Path(settings.AGENT_LOG_DIR) / name
    label, source = instance_log_dir_item(own_platform())
    if not folder.is_dir():
        return [item(f"{label}/{name}", source, None, f"{folder} does not exist on this host")]
    files = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    newest = heapq.nlargest(MAX_LISTED_FILES, files, key=lambda e: e.stat().st_mtime)
    items = [file_item(f"{label}/{name}/{e.name}", Path(e.path), max_bytes, budget)
             for e in newest]  # fmt: skip
    if len(files) > len(newest):
        left = f"{len(files) - len(newest)} older files not read (it reads {MAX_LISTED_FILES})"
        items.append(item(f"{label}/{name}", source, None, left))
    return items or [item(f"{label}/{name}", source, None, f"{folder} is empty")]


def checkpoint_dirs(name: str) -> list[tuple[str, Path]]:
    """Stateful snapshots' and the saved state's image folders, as LXD (and Incus, the same
    way) lay them out."""
    pools = Path(settings.AGENT_LXD_DIR) / "storage-pools"
    found = [(f"snapshot {path.parent.name}", path)
             for path in sorted(pools.glob(f"*/containers-snapshots/{name}/*/state"))]  # fmt: skip
    found += [("saved state (stateful stop)", path)
              for path in sorted(pools.glob(f"*/containers/{name}/state"))]  # fmt: skip
    return [(label, path) for label, path in found if path.is_dir()]


def checkpoints(name: str, max_bytes: int, budget: Budget) -> tuple[list[dict], list[dict]]:
    """(listings with CRIU's statistics, CRIU's own logs found with the images)."""
    listings, logs = [], []
    crit = shutil.which(settings.AGENT_CRIT)
    for label, folder in checkpoint_dirs(name):
        files: list[dict] = sorted(
            ({"name": p.name, "size": p.stat().st_size} for p in folder.iterdir() if p.is_file()),
            key=lambda entry: entry["name"],
        )
        listing: dict = {"label": label, "path": str(folder), "files": files[:MAX_LISTED_FILES],
                         "file_count": len(files), "stats": {}, "stats_note": ""}  # fmt: skip
        notes = []
        for stats_file in ("stats-dump", "stats-restore"):
            if not (folder / stats_file).exists():
                continue
            if crit is None:
                notes.append(f"crit not available ({settings.AGENT_CRIT!r} is not on the PATH)")
                break
            status, output, cut = run([crit, "show", str(folder / stats_file)])
            try:
                for entry in json.loads(output)["entries"]:
                    listing["stats"].update(entry)
            except (ValueError, KeyError, TypeError):
                why = "its output was over the cap" if cut else f"exit {status}"
                notes.append(f"crit could not decode {stats_file} ({why})")
        if not listing["stats"] and not notes:
            notes.append("no stats-dump or stats-restore in this folder")
        listing["stats_note"] = "; ".join(notes)
        listings.append(listing)
        slug = re.sub(r"[^A-Za-z0-9.-]+", "-", label).strip("-")
        for log_name in ("dump.log", "restore.log"):
            if (folder / log_name).is_file():
                logs.append(file_item(f"checkpoints/{name}/{slug}/{log_name}",
                                      folder / log_name, max_bytes, budget))  # fmt: skip
    return listings, logs


def collect(instance_names: list[str], max_bytes: int, total_bytes: int | None = None) -> dict:
    """Everything for a bundle, every item read within `max_bytes` and the whole reply within
    `total_bytes` (ten items' worth unless the panel says)."""
    budget = Budget(total_bytes if total_bytes is not None else 10 * max_bytes)
    found = facts()
    items = host_items(max_bytes, found, budget)
    listings: list[dict] = []
    for name in instance_names:
        if not valid_name(name):
            refusal = f"refused: {name[:80]!r} is not a valid LXD instance name"
            items.append(item(*instance_log_dir_item(own_platform()), None, refusal))
            continue
        items += instance_log_dir(name, max_bytes, budget)
        found_listings, logs = checkpoints(name, max_bytes, budget)
        listings += found_listings
        items += logs
    return {"facts": found, "items": items, "checkpoints": listings}


@app.task(name="workers.agent.collect_task", ignore_result=False)
def collect_task(instance_names: list[str], max_bytes: int, total_bytes: int | None = None):
    return collect(instance_names, max_bytes, total_bytes)


@app.task(name="workers.agent.probe_task", ignore_result=False)
def probe_task() -> dict:
    return facts()


@app.task(name="workers.agent.stuck_dump_task", ignore_result=False)
def stuck_dump_task(instance_name: str, how: str) -> dict:
    """Find (and with how="resume" or "stop", end) a live migration's stuck CRIU dump of one
    container on this host: workers/dumps.py says which process and why."""
    if not valid_name(instance_name):
        return {"holds": [], "actions": [],
                "refused": f"{instance_name[:80]!r} is not a valid LXD instance name"}  # fmt: skip
    return dumps.end_holds(instance_name, how)


def own_queue() -> str:
    """This host's queue, from the certificate the server serves (its layout's data dir)."""
    from panel.lxd import certificate_fingerprint

    certificate = Path(settings.AGENT_LXD_DIR) / "server.crt"
    try:
        return queue_for(certificate_fingerprint(certificate.read_text()))
    except OSError as error:
        sys.exit(
            f"agent: cannot read {certificate} ({error.strerror}): is LXD or Incus installed "
            "here? Set PANEL_AGENT_LAYOUT=snap for LXD's snap, incus for Incus, or "
            "PANEL_AGENT_LXD_DIR."
        )


def fence(queue: str) -> None:
    """Touch no Redis key outside the agent's own names, so its Redis user can be limited to
    them (panel/hosts/agent_access.py): unacknowledged jobs kept under the queue's name
    instead of the shared `unacked` hash, the queue consumed without declaring it (the panel
    declares it when it sends), no remote control (the shared pidbox) and no events."""
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "unacked_key": f"{queue}.unacked",
        "unacked_index_key": f"{queue}.unacked_index",
        "unacked_mutex_key": f"{queue}.unacked_mutex",
    }
    app.conf.task_queues = [Queue(queue, Exchange(queue), routing_key=queue, no_declare=True)]
    app.conf.worker_enable_remote_control = False
    app.conf.worker_send_task_events = False


def main(argv: list[str]) -> None:
    queue = own_queue()
    fence(queue)
    print(f"agent: consuming queue {queue}", flush=True)
    app.worker_main(
        ["worker", "-Q", queue, "--hostname", f"{queue}@%h", "--pool", "threads",
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "INFO", *argv]
    )  # fmt: skip


if __name__ == "__main__":
    import django

    django.setup()
    main(sys.argv[1:])
