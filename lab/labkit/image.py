"""The busybox counter image every lab test container runs."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from .base import IMAGE_DIR, log, run

# The container's init. It detaches from the console first (the console is not restorable), and
# ticks without forking: a `sleep 1` child per second makes CRIU dumps fail at random with
# "zombie NNN (comm sh) found while seizing". `read -t 1` on a fifo opened read-write never gets
# data and never blocks on open, so it is a fork-free one-second sleep.
# /tmp/counter continues from the value on disk after a plain restart too, so the counter alone
# cannot tell a restored process from a rebooted one: /tmp/boot holds an id drawn once per boot.
# A stateful restore or a live migration keeps it; any restart of init changes it.
COUNTER_INIT = """#!/bin/sh
exec </dev/null >/dev/null 2>&1
trap 'exit 0' TERM INT PWR
[ -p /tmp/tick ] || { rm -f /tmp/tick; mkfifo /tmp/tick; }
echo "$RANDOM$RANDOM$RANDOM" >/tmp/boot
n=0
[ -r /tmp/counter ] && read -r n </tmp/counter
case "$n" in '' | *[!0-9]*) n=0 ;; esac
while :; do
    n=$((n + 1))
    echo "$n" >/tmp/counter
    read -t 1 x <>/tmp/tick
done
"""


def ensure_image_files() -> tuple[Path, Path]:
    meta, rootfs = IMAGE_DIR / "meta.tar.gz", IMAGE_DIR / "rootfs.tar.gz"
    busybox = Path("/bin/busybox")
    recipe_file = IMAGE_DIR / "recipe.sha256"
    # Rebuilt only when what goes into it changes: the init script or Debian's busybox.
    recipe = hashlib.sha256(COUNTER_INIT.encode() + busybox.read_bytes()).hexdigest()
    built = meta.exists() and rootfs.exists() and recipe_file.exists()
    if built and recipe_file.read_text().strip() == recipe:
        return meta, rootfs
    log("building the busybox counter image")
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    applets = run([str(busybox), "--list-full"]).stdout.split()

    def add(
        tar: tarfile.TarFile,
        name: str,
        *,
        kind: bytes = tarfile.DIRTYPE,
        mode: int = 0o755,
        data: bytes = b"",
        link: str = "",
    ) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    # Fixed mtimes everywhere: a rebuild gives the same bytes, so the same image fingerprint.
    def write_tar_gz(path: Path, fill) -> None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            fill(tar)
        with (
            open(path.with_suffix(".tmp"), "wb") as out,
            gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        ):
            gz.write(raw.getvalue())
        path.with_suffix(".tmp").replace(path)

    def fill_rootfs(tar: tarfile.TarFile) -> None:
        # A split image: the rootfs tarball holds the filesystem itself, no rootfs/ prefix.
        dirs: set[str] = set()
        for d in (
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "etc",
            "dev",
            "proc",
            "sys",
            "run",
            "root",
            "mnt",
            "var",
            "var/tmp",
        ):
            dirs.add(d)
        for d in sorted(dirs):
            add(tar, d)
        add(tar, "tmp", mode=0o1777)
        add(tar, "bin/busybox", kind=tarfile.REGTYPE, data=busybox.read_bytes())
        for applet in sorted(set(applets)):
            if applet in ("bin/busybox", "sbin/init"):
                continue
            parent = str(Path(applet).parent)
            if parent not in dirs:
                dirs.add(parent)
                add(tar, parent)
            add(tar, applet, kind=tarfile.SYMTYPE, mode=0o777, link="/bin/busybox")
        add(
            tar,
            "etc/passwd",
            kind=tarfile.REGTYPE,
            mode=0o644,
            data=b"root:x:0:0:root:/root:/bin/sh\n",
        )
        add(tar, "etc/group", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:\n")
        add(tar, "sbin/init", kind=tarfile.REGTYPE, data=COUNTER_INIT.encode())

    metadata = (
        b"architecture: x86_64\n"
        b"creation_date: 1700000000\n"
        b"properties:\n"
        b"  description: busybox counter (lxd lab)\n"
        b"  os: busybox\n"
    )

    def fill_meta(tar: tarfile.TarFile) -> None:
        add(tar, "metadata.yaml", kind=tarfile.REGTYPE, mode=0o644, data=metadata)

    write_tar_gz(rootfs, fill_rootfs)
    write_tar_gz(meta, fill_meta)
    recipe_file.write_text(recipe + "\n")
    return meta, rootfs
