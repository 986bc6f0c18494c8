"""Preflight and the Debian packages the lab needs on the system itself."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from .apt import private_apt, system_mirror_uri
from .base import DEBIAN_KEYRING, LAB, log, run

SYSTEM_PACKAGES = [
    "lxd",
    "lxd-client",
    "iptables",
    "busybox-static",
    "criu",
    "uidmap",
    "btrfs-progs",  # mkfs.btrfs, which LXD runs to make the `bt` pools
]
# Incus 6.0.4 (LTS) from bookworm-backports, only when Incus hosts are asked for. It installs
# system-wide beside lxd 5.0.2 and removes nothing: it uses Debian 12's liblxc 5.0.2; apt adds
# libcowsql0, libraft0, libsquashfs1, runit-helper and squashfs-tools-ng.
INCUS_PACKAGES = ["incus-base", "incus-client"]
INCUS_SUITES = ("bookworm", "bookworm-updates", "bookworm-backports")
INCUS_APT_DIR = LAB / "apt-bookworm"


def preflight() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (network namespaces, mounts, LXD daemons)")
    os_release = Path("/etc/os-release")
    release = os_release.read_text() if os_release.exists() else ""
    if "ID=debian" not in release.splitlines():
        problems.append("this lab supports Debian only (/etc/os-release has no ID=debian)")
    for tool in ("apt-get", "dpkg-query", "dpkg-deb"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found")
    if problems:
        fail_preflight(problems)


def fail_preflight(problems: list[str]) -> None:
    print("lab preflight failed:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    sys.exit(2)


def missing_packages(packages: list[str]) -> list[str]:
    result = run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages], check=False
    )
    installed = {
        line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")
    }
    return [p for p in packages if p not in installed]


def ensure_system_packages() -> None:
    missing = missing_packages(SYSTEM_PACKAGES)
    if not missing:
        return
    log(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], check=False, env=env, quiet=False)
    result = run(["apt-get", "install", "-y", *missing], check=False, env=env, quiet=False)
    still_missing = missing_packages(SYSTEM_PACKAGES)
    if result.returncode != 0 or still_missing:
        fail_preflight([f"could not install Debian packages: {' '.join(still_missing)}"])


def ensure_incus_packages() -> None:
    """Install Incus from bookworm-backports with a private apt (apt.private_apt): its own
    sources list naming bookworm (for the dependencies) and bookworm-backports on the mirror the
    system's sources name. The system's apt sources never name backports, before or after."""
    missing = missing_packages(INCUS_PACKAGES)
    if not missing:
        return
    mirror = system_mirror_uri()
    sources = [f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {suite} main" for suite in INCUS_SUITES]
    options = private_apt(INCUS_APT_DIR, sources)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"fetching {', '.join(INCUS_SUITES)} package lists from the system's mirror ({mirror})")
    run(["apt-get", *options, "update"], env=env)
    # Only new packages: refuse if apt would remove or upgrade anything ("Inst pkg [old] ...").
    plan = run(["apt-get", *options, "-s", "install", *missing], env=env).stdout.splitlines()
    changes = [line for line in plan if re.match(r"(Remv \S+|Inst \S+ \[)", line)]
    if changes:
        fail_preflight(["installing Incus would change installed packages:", *changes])
    log(f"installing Incus from bookworm-backports: {' '.join(missing)}")
    result = run(
        ["apt-get", *options, "install", "-y", *missing], env=env, check=False, quiet=False
    )
    still_missing = missing_packages(INCUS_PACKAGES)
    if result.returncode != 0 or still_missing:
        fail_preflight([f"could not install Incus packages: {' '.join(still_missing)}"])
