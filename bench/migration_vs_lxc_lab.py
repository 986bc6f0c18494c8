"""bench/migration_vs_lxc.py: the two lab hosts through the `lxc` CLI (setup, clean-up and
checking the truth), CRIU's dump log read from a host's log tree, and a fresh container after
a failed migration. Not run on its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from _common import lab_state

LAB = lab_state(hosts=2)
H1, H2 = LAB["hosts"][:2]
REMOTES = {H1["name"]: "h1", H2["name"]: "h2"}


def lxc_local(lab_host: dict, *args: str, check: bool = True, timeout: float = 120):
    """`lxc` on a lab host's unix socket: setup, cleanup and checking the truth."""
    result = subprocess.run(["lxc", *args], env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"lxc {' '.join(args)} on {lab_host['name']}: {result.stderr.strip()}")
    return result


def status_on(lab_host: dict, name: str) -> str | None:
    listing = json.loads(lxc_local(lab_host, "list", "--format", "json", name).stdout)
    return next((item["status"] for item in listing if item["name"] == name), None)


def newest_log(lab_host: dict, name: str, prefix: str, since: float) -> str:
    """The newest `prefix`*.log LXD wrote for `name` on the host since `since`, or ''."""
    folder = Path(lab_host["lxd_dir"]).parent / "log" / name
    logs = [p for p in folder.glob(f"{prefix}*.log") if p.stat().st_mtime >= since - 1]
    return max(logs, key=lambda p: p.name).read_text(errors="replace") if logs else ""


# Where CRIU's time goes, from its own log (seconds since CRIU started, on each line).
CRIU_MARKS = {
    "freeze asked": r"freezer\.state=FREEZING|freezing cgroup",
    "frozen": r"freezer\.state=FROZEN",
    "network namespace saving": r"net: \tRunning ip addr save",
    "network namespace saved": r"Namespaces dump complete",
    "dump written": r"Running post-dump scripts",
    "unfrozen": r"Unfreezing tasks",
    "restore started": r"CRIU run id",
    "network namespace restoring": r"net: \tRunning ip addr restore",
    "network namespace restored": r"Running ip6tables-legacy-restore",  # the last of them
    "restored": r"Restore finished successfully",
}


def criu_marks(text: str) -> dict[str, float]:
    """The first time of each of CRIU_MARKS found in a CRIU log."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        stamp = re.match(r"^\((\d+\.\d+)\)", line)
        if stamp is None:
            continue
        for mark, pattern in CRIU_MARKS.items():
            if mark not in found and re.search(pattern, line):
                found[mark] = float(stamp.group(1))
    return found


def criu_breakdown(dump_log: str, restore_log: str) -> dict[str, float | None]:
    """A live migration's frozen interval split by CRIU's own log lines: the freeze (the
    first 100 ms retry of CRIU's cgroup v1 freezer poll included), the dump (of which the
    network namespace, saved by running ip and iptables-save), LXD's post-dump wait (the
    images' transfer, the target's restore, LXD's signalling), and the target's restore
    (of which the network namespace, ip and iptables-restore again)."""
    dump, restore = criu_marks(dump_log), criu_marks(restore_log)

    def span(marks: dict, start: str, end: str) -> float | None:
        if start in marks and end in marks:
            return round(marks[end] - marks[start], 3)
        return None

    return {
        "freeze": span(dump, "freeze asked", "frozen"),
        "dump": span(dump, "frozen", "dump written"),
        "dump: network namespace": span(dump, "network namespace saving",
                                        "network namespace saved"),
        "post-dump wait": span(dump, "dump written", "unfrozen"),
        "restore (target)": span(restore, "restore started", "restored"),
        "restore: network namespace": span(restore, "network namespace restoring",
                                           "network namespace restored"),
    }  # fmt: skip


def frozen_in_dump_log(lab_host: dict, name: str, since: float) -> float | None:
    """The CRIU frozen interval of the newest migration_dump log written since `since`,
    read from the host's /var/log/lxd tree, parsed with the panel's own expressions."""
    from panel.operations.downtime import FREEZER, UNFREEZE

    folder = Path(lab_host["lxd_dir"]).parent / "log" / name
    logs = [p for p in folder.glob("migration_dump_*.log") if p.stat().st_mtime >= since - 1]
    if not logs:
        return None
    lines = max(logs, key=lambda p: p.name).read_text(errors="replace").splitlines()
    start = next((float(m.group(1)) for m in map(FREEZER.match, lines) if m), None)
    end = next((float(m.group(1)) for m in map(UNFREEZE.match, lines) if m), None)
    return round(end - start, 3) if start is not None and end is not None else None


def replace(where: dict) -> str:
    """After a failed migration, start over with a fresh container on the source host.

    The failed one is not reused: LXD 5.0.2 keeps the source's "Live-migrating instance"
    operation RUNNING after its stuck dump is killed, and the next live migration of that
    container was seen to hang FROZEN. Its stuck dumps are killed by PID, every copy deleted.
    """
    from tests.lab_tools import kill_stuck_dumps

    old = where["name"]
    killed = kill_stuck_dumps(old)
    statuses = {h["name"]: status_on(h, old) for h in (H1, H2)}
    for lab_host in (H1, H2):
        lxc_local(lab_host, "delete", "--force", old, check=False)
    where["name"] = f"{where['base']}-{len(where['used'])}"
    where["used"].append(where["name"])
    launch(where["host"], where["name"], where.get("pool", ""))
    where.get("setup", lambda *_: None)(where["host"], where["name"])
    return (f"killed stuck dumps {killed}; {old} was {statuses}, deleted; "
            f"continuing with a fresh {where['name']} on {where['host']['name']}")  # fmt: skip


def launch(lab_host: dict, name: str, pool: str = "") -> None:
    """The lab's counter image, its root disk on `pool` (e.g. "bt", btrfs) or the profile's."""
    lxc_local(lab_host, "launch", LAB["image_alias"], name, *(["--storage", pool] if pool else []))
    time.sleep(3)


def awk_pid(lab_host: dict, name: str) -> str:
    return lxc_local(lab_host, "exec", name, "--", "pidof", "awk", check=False).stdout.strip()


def lxc_remote_add(lxd_conf: Path, lab_host: dict) -> None:
    subprocess.run(
        ["lxc", "remote", "add", REMOTES[lab_host["name"]], lab_host["url"],
         "--password", lab_host["trust_password"], "--accept-certificate"],
        env={**os.environ, "LXD_CONF": str(lxd_conf)}, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
