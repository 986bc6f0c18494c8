"""What every part of the lab shares: its paths and names, errors, running commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

LAB_SOURCE = Path(__file__).resolve().parent.parent  # lab/
REPO = LAB_SOURCE.parent
LAB_SCRIPT = LAB_SOURCE / "lab.py"  # the entry script; the reapers are started through it
# Resolved: var/lab may be a symlink (a worktree sharing another checkout's lab). state.json
# then names the real trees, valid for every checkout, and lab_mounts() compares them with the
# resolved mount points /proc reports.
LAB = (REPO / "var" / "lab").resolve()
STATE_FILE = LAB / "state.json"
CACHE = LAB / "cache"
APT_DIR = LAB / "apt"
CRIU_PREFIX = LAB / "criu-prefix"
BIN = LAB / "bin"
IMAGE_DIR = LAB / "image"
HOSTS_DIR = LAB / "hosts"
SHIM_SOURCE = LAB_SOURCE / "criu-shim.sh"

BRIDGE = "lxdlab0"
BRIDGE_ADDRESS = "10.77.0.1"
PREFIX_LEN = 24
NETNS_PREFIX = "lxdlab-"
IMAGE_ALIAS = "counter"
HTTPS_PORT = 8443
DEFAULT_HOSTS = 2
MAX_HOSTS = 10  # of each kind: hostN is 10.77.0.(10+N), incusN 10.77.0.(20+N)
# Every host's storage pools, by name: driver. `default` (dir) stays the default profile's pool;
# `bt` is a loop-backed btrfs pool (a file in the host's tree), for migrations without LXD's
# final rsync (lab/README.md, "btrfs pools").
POOLS = {"default": "dir", "bt": "btrfs"}
BTRFS_POOL_SIZE = "3GiB"

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
CRIU_MODES = ("fixed", "stock")
CRIU_MODE_FILE = "lab-criu-mode"  # under the host's lib tree = /var/lib/lxd inside the host


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


def log(message: str) -> None:
    print(message, flush=True)


def run(
    cmd: list[str],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    quiet: bool = True,
    stdout_only: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command; quiet: capture its output (stderr into stdout, unless stdout_only: for
    output to parse, which a client's notices on stderr must not spoil)."""
    stderr = subprocess.PIPE if stdout_only else subprocess.STDOUT
    result = subprocess.run(
        cmd,
        text=True,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if quiet else None,
        stderr=stderr if quiet else None,
    )
    if check and result.returncode != 0:
        output = ((result.stdout or "") + (result.stderr or "")).strip()
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{output}")
    return result


def process_alive(pid: int | None, name: str | None = None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    return name is None or os.path.basename(cmdline[0].decode(errors="replace")) == name


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")
