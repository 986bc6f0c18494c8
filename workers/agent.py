"""The host agent: a Celery worker started ON an LXD host, consuming that host's own queue.

It gathers what only the host has (dmesg, host mountinfo, uname, lxd.log, lxd-bridge, the
instance's log directory, checkpoint images, CRIU's statistics and `criu check`) with a fixed,
read-only set of collectors: no task takes a command or a path, only an instance name checked
against LXD's naming rule. Replies travel back through the result backend (panel/settings.py
says why that is the one use of it). How to run it on a host: docs/agent.md.

    python -m workers.agent        # works out its queue from the LXD server certificate
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from workers.celery import app

QUEUE_PREFIX = "agent."
# LXD's own rule for instance and snapshot names; anything else is refused, so a name can
# never walk out of the directories below ("../etc").
LXD_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.+-]{0,61}[A-Za-z0-9])?$")
COMMAND_TIMEOUT = 20
MAX_LISTED_FILES = 500
# The host-level items, in the order report readers look for them: (file in the bundle,
# where it comes from). Both sides use this list, so a silent agent still yields every row.
HOST_ITEMS = [
    ("dmesg.txt", "agent: dmesg"),
    ("mountinfo.txt", "agent: /proc/self/mountinfo of the host"),
    ("uname.txt", "agent: uname -a"),
    ("lxd.log", "agent: LXD's lxd.log"),
    ("lxd-bridge", "agent: /etc/default/lxd-bridge"),
    ("criu-check.txt", "agent: criu --version; criu check"),
]
INSTANCE_LOG_DIR_ITEM = ("var-log-lxd", "agent: the instance's log directory")


def queue_for(fingerprint: str) -> str:
    """The queue of the host whose LXD server certificate has this SHA-256 fingerprint."""
    return QUEUE_PREFIX + fingerprint[:16]


def valid_name(name: str) -> bool:
    return bool(LXD_NAME.match(name)) and ".." not in name


def run(command: list[str]) -> tuple[int, str]:
    """One of the agent's fixed commands; (exit status, stdout and stderr)."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, errors="replace"
        )
    except FileNotFoundError:
        return 127, f"{command[0]}: not found on this host"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(command)}: no answer within {COMMAND_TIMEOUT} s"
    return done.returncode, done.stdout + done.stderr


def read_tail(path: Path, max_bytes: int) -> tuple[str | None, bool, str]:
    """(text or None, truncated, reason): the end of the file, where errors are."""
    try:
        with path.open("rb") as handle:
            try:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - max_bytes))
                data = handle.read(max_bytes)
            except OSError:  # /proc files cannot seek from their end: read them whole
                whole = handle.read()
                size, data = len(whole), whole[-max_bytes:]
    except FileNotFoundError:
        return None, False, f"{path} does not exist on this host"
    except OSError as error:
        return None, False, f"{path} could not be read: {error.strerror}"
    return data.decode(errors="replace"), size > max_bytes, ""


def item(name: str, source: str, content: str | None, reason: str = "", truncated=False):
    return {"name": name, "source": source, "content": content, "reason": reason,
            "truncated": truncated}  # fmt: skip


def capped(text: str, max_bytes: int) -> tuple[str, bool]:
    data = text.encode()
    if len(data) <= max_bytes:
        return text, False
    return data[-max_bytes:].decode(errors="replace"), True


def facts() -> dict:
    """What capabilities need from the host: `criu check`, CPU flags, uname, CRIU's version."""
    status, output = run([settings.AGENT_CRIU, "check"])
    dirty, dirty_output = run([settings.AGENT_CRIU, "check", "--feature", "mem_dirty_track"])
    _, version = run([settings.AGENT_CRIU, "--version"])
    _, uname = run(["uname", "-a"])
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


def host_items(max_bytes: int, found: dict) -> list[dict]:
    """The HOST_ITEMS, in that order; a missing one says why."""
    sources = dict(HOST_ITEMS)
    status, output = run(["dmesg"])
    dmesg, dmesg_cut = capped(output, max_bytes)
    mountinfo, mountinfo_cut, mountinfo_reason = read_tail(Path("/proc/self/mountinfo"), max_bytes)
    lxd_log, lxd_log_cut, lxd_log_reason = read_tail(
        Path(settings.AGENT_LOG_DIR) / "lxd.log", max_bytes
    )
    bridge, bridge_cut, bridge_reason = read_tail(Path(settings.AGENT_LXD_BRIDGE_FILE), max_bytes)
    if bridge is None:
        bridge_reason += " (expected with LXD 3.0 and later, which manage their bridge themselves)"
    check = found["criu_check"]
    return [
        item("dmesg.txt", sources["dmesg.txt"], dmesg if status == 0 else None,
             "" if status == 0 else f"dmesg exited {status}: {output.strip()[:200]}", dmesg_cut),
        item("mountinfo.txt", sources["mountinfo.txt"], mountinfo, mountinfo_reason,
             mountinfo_cut),
        item("uname.txt", sources["uname.txt"], found["uname"] + "\n"),
        item("lxd.log", sources["lxd.log"], lxd_log, lxd_log_reason, lxd_log_cut),
        item("lxd-bridge", sources["lxd-bridge"], bridge, bridge_reason, bridge_cut),
        item("criu-check.txt", sources["criu-check.txt"],
             f"$ criu --version\n{found['criu_version']}\n\n$ criu check\n{check['output']}\n"),
    ]  # fmt: skip


def instance_log_dir(name: str, max_bytes: int) -> list[dict]:
    """Every file of /var/log/lxd/<name>/ (the tarball the announcement asks for)."""
    folder = Path(settings.AGENT_LOG_DIR) / name
    label, source = INSTANCE_LOG_DIR_ITEM
    if not folder.is_dir():
        return [item(f"{label}/{name}", source, None, f"{folder} does not exist on this host")]
    items = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink():
            text, cut, reason = read_tail(path, max_bytes)
            items.append(item(f"{label}/{name}/{path.name}", f"agent: {path}", text, reason, cut))
    return items or [item(f"{label}/{name}", source, None, f"{folder} is empty")]


def checkpoint_dirs(name: str) -> list[tuple[str, Path]]:
    """Stateful snapshots' and the saved state's image folders, as LXD lays them out."""
    pools = Path(settings.AGENT_LXD_DIR) / "storage-pools"
    found = [(f"snapshot {path.parent.name}", path)
             for path in sorted(pools.glob(f"*/containers-snapshots/{name}/*/state"))]  # fmt: skip
    found += [("saved state (stateful stop)", path)
              for path in sorted(pools.glob(f"*/containers/{name}/state"))]  # fmt: skip
    return [(label, path) for label, path in found if path.is_dir()]


def checkpoints(name: str, max_bytes: int) -> tuple[list[dict], list[dict]]:
    """(listings with CRIU's statistics, CRIU's own logs found with the images)."""
    listings, logs = [], []
    crit = shutil.which(settings.AGENT_CRIT)
    for label, folder in checkpoint_dirs(name):
        files = sorted(
            ({"name": p.name, "size": p.stat().st_size} for p in folder.iterdir() if p.is_file()),
            key=lambda entry: entry["name"],
        )
        listing = {"label": label, "path": str(folder), "files": files[:MAX_LISTED_FILES],
                   "file_count": len(files), "stats": {}, "stats_note": ""}  # fmt: skip
        notes = []
        for stats_file in ("stats-dump", "stats-restore"):
            if not (folder / stats_file).exists():
                continue
            if crit is None:
                notes.append(f"crit not available ({settings.AGENT_CRIT!r} is not on the PATH)")
                break
            status, output = run([crit, "show", str(folder / stats_file)])
            try:
                for entry in json.loads(output)["entries"]:
                    listing["stats"].update(entry)
            except (ValueError, KeyError, TypeError):
                notes.append(f"crit could not decode {stats_file} (exit {status})")
        if not listing["stats"] and not notes:
            notes.append("no stats-dump or stats-restore in this folder")
        listing["stats_note"] = "; ".join(notes)
        listings.append(listing)
        slug = re.sub(r"[^A-Za-z0-9.-]+", "-", label).strip("-")
        for log_name in ("dump.log", "restore.log"):
            if (folder / log_name).is_file():
                text, cut, reason = read_tail(folder / log_name, max_bytes)
                logs.append(item(f"checkpoints/{name}/{slug}/{log_name}",
                                 f"agent: {folder / log_name}", text, reason, cut))  # fmt: skip
    return listings, logs


def collect(instance_names: list[str], max_bytes: int) -> dict:
    found = facts()
    items = host_items(max_bytes, found)
    listings: list[dict] = []
    for name in instance_names:
        if not valid_name(name):
            refusal = f"refused: {name[:80]!r} is not a valid LXD instance name"
            items.append(item(INSTANCE_LOG_DIR_ITEM[0], INSTANCE_LOG_DIR_ITEM[1], None, refusal))
            continue
        items += instance_log_dir(name, max_bytes)
        found_listings, logs = checkpoints(name, max_bytes)
        listings += found_listings
        items += logs
    return {"facts": found, "items": items, "checkpoints": listings}


@app.task(name="workers.agent.collect_task", ignore_result=False)
def collect_task(instance_names: list[str], max_bytes: int) -> dict:
    return collect(instance_names, max_bytes)


@app.task(name="workers.agent.probe_task", ignore_result=False)
def probe_task() -> dict:
    return facts()


def own_queue() -> str:
    """This host's queue, from the certificate LXD serves (Debian or snap layout)."""
    from panel.lxd import certificate_fingerprint

    certificate = Path(settings.AGENT_LXD_DIR) / "server.crt"
    try:
        return queue_for(certificate_fingerprint(certificate.read_text()))
    except OSError as error:
        sys.exit(
            f"agent: cannot read {certificate} ({error.strerror}): is LXD installed here? "
            "Set PANEL_AGENT_LAYOUT=snap for the snap, or PANEL_AGENT_LXD_DIR."
        )


def main(argv: list[str]) -> None:
    queue = own_queue()
    print(f"agent: consuming queue {queue}", flush=True)
    app.worker_main(
        ["worker", "-Q", queue, "--hostname", f"{queue}@%h", "--pool", "threads",
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
         *argv]
    )  # fmt: skip


if __name__ == "__main__":
    import django

    django.setup()
    main(sys.argv[1:])
