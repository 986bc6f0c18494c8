"""CRIU 4.1.1 from Debian 13 in a private prefix, and the shim the lab's daemons call."""

from __future__ import annotations

import shutil
from pathlib import Path

from .apt import private_apt, system_mirror_uri
from .base import (
    APT_DIR,
    BIN,
    CACHE,
    CRIU_PREFIX,
    DEBIAN_KEYRING,
    SHIM_SOURCE,
    LabError,
    log,
    run,
)

# CRIU 4.1.1 and the libraries it needs, all from Debian 13 (LAB.md section 2).
TRIXIE_PACKAGES = [
    "criu",
    "libcompel1",
    "libc6",
    "libbsd0",
    "libmd0",
    "libgnutls30t64",
    "libnet1",
    "libnftables1",
    "libnl-3-200",
    "libprotobuf-c1",
    "libuuid1",
    "libp11-kit0",
    "libidn2-0",
    "libunistring5",
    "libtasn1-6",
    "libnettle8t64",
    "libhogweed6t64",
    "libgmp10",
    "libffi8",
    "libjansson4",
    "libmnl0",
    "libnftnl11",
    "libxtables12",
    "libedit2",
    "libtinfo6",
    "libzstd1",
]


def deb_for(package: str) -> Path | None:
    found = sorted(CACHE.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def ensure_criu() -> None:
    stamp = CRIU_PREFIX / ".lab-complete"
    if stamp.exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    missing = [p for p in TRIXIE_PACKAGES if deb_for(p) is None]
    if missing:
        download_trixie_packages(missing)
    log(f"extracting {len(TRIXIE_PACKAGES)} packages into {CRIU_PREFIX}")
    shutil.rmtree(CRIU_PREFIX, ignore_errors=True)
    CRIU_PREFIX.mkdir(parents=True)
    for package in TRIXIE_PACKAGES:
        deb = deb_for(package)
        assert deb is not None
        run(["dpkg-deb", "-x", str(deb), str(CRIU_PREFIX)])
    check = run(criu_command("check"), check=False)
    log(f"private criu check: {check.stdout.strip().splitlines()[-1] if check.stdout else '?'}")
    stamp.write_text("\n".join(sorted(d.name for d in CACHE.glob("*.deb"))) + "\n")


def criu_command(*args: str) -> list[str]:
    libdir = CRIU_PREFIX / "usr/lib/x86_64-linux-gnu"
    # CRIU 4.1.1 needs glibc >= 2.38; run it with its own loader and libraries, so nothing of
    # trixie touches the system (installing it system-wide would upgrade libc).
    return [
        str(libdir / "ld-linux-x86-64.so.2"),
        "--library-path",
        str(libdir),
        str(CRIU_PREFIX / "usr/sbin/criu"),
        *args,
    ]


def download_trixie_packages(packages: list[str]) -> None:
    mirror = system_mirror_uri()
    # Signatures stay checked: bookworm's debian-archive-keyring already carries trixie's keys.
    options = private_apt(APT_DIR, [f"deb [signed-by={DEBIAN_KEYRING}] {mirror} trixie main"])
    log(f"fetching trixie package lists from the system's mirror ({mirror})")
    run(["apt-get", *options, "update"])
    log(f"downloading {len(packages)} trixie packages into {CACHE}")
    run(["apt-get", *options, "download", *packages], cwd=CACHE)
    still = [p for p in packages if deb_for(p) is None]
    if still:
        raise LabError(f"apt-get download did not fetch: {' '.join(still)}")


def ensure_shim() -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    target = BIN / "criu"
    content = SHIM_SOURCE.read_bytes()
    if not target.exists() or target.read_bytes() != content:
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.chmod(0o755)
        tmp.replace(target)
