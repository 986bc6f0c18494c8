"""Starting and configuring a host's daemon, in its own network and mount namespaces."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from .base import (
    BIN,
    BTRFS_POOL_SIZE,
    CRIU_MODE_FILE,
    HTTPS_PORT,
    IMAGE_ALIAS,
    LAB_SCRIPT,
    POOLS,
    LabError,
    process_alive,
    run,
    write_private,
)
from .host import Host, lxd_answers, lxd_get
from .network import ensure_network
from .stopping import stop_host_processes
from .trust import ensure_trust_token

# Each host: its own network namespace, entered with nsenter (`ip netns exec` remounts /sys and
# hides the cgroup v1 hierarchy: migrations then fail with "freezing the container failed");
# then its own mount namespace, made private, with the host's tree bound onto /var/lib/lxd and
# /var/log/lxd (Incus: Host.mounts) so every host sees the same paths as a real machine does
# (with different LXD_DIRs on one filesystem, host2 -> host1 restores failed on shmounts).
# Separate network namespaces also keep liblxc's abstract command sockets apart ("already
# running" otherwise). Arguments: pairs of what and where to mount (Host.mounts), "--", the
# daemon's command line.
DAEMON_SCRIPT = """set -e
mount --make-rprivate /
while [ "$1" != -- ]; do
    if [ "$1" = tmpfs ]; then
        mount -t tmpfs -o mode=0711 lab-run "$2"
    else
        mount --bind "$1" "$2"
    fi
    shift 2
done
shift
exec "$@"
"""


def start_daemon(host: Host) -> None:
    for what, where in host.mounts():
        for folder in ([] if what == "tmpfs" else [Path(what)]) + [Path(where)]:
            folder.mkdir(parents=True, exist_ok=True)
    host.lib.chmod(0o711)
    if not (host.lib / CRIU_MODE_FILE).exists():
        host.set_criu_mode("fixed")
    for stale in (host.socket, host.pid_file, host.reaper_pid_file):
        stale.unlink(missing_ok=True)  # left by a killed daemon
    with open(host.tree / "daemon.out", "ab") as out:
        subprocess.Popen(
            [sys.executable, str(LAB_SCRIPT), "_reaper", host.name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=host.tree,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while host.pid() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    result = run(host.waitready_command(), check=False, env=host.lxc_env())
    if result.returncode != 0 or not process_alive(host.pid(), host.daemon):
        tail = ""
        for log_file in (host.tree / "daemon.out", host.daemon_log()):
            if log_file.exists():
                tail += "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        what = "LXD" if host.kind == "lxd" else "Incus"
        raise LabError(f"{host.name}: {what} did not become ready\n{result.stdout}\n{tail}")


def run_reaper(host: Host) -> int:
    """Parent of one host's daemon: starts it, then reaps every orphan of its process tree.

    liblxc daemonises its container monitors, and their orphans go to PID 1, which in this
    sandbox (unlike a real init) reaps late: stopped containers and killed daemons would leave
    zombies around. As a child subreaper this process adopts and reaps them instead; it exits
    once the daemon and everything it started are gone.
    """
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    env = {
        # The shim comes first on the daemon's PATH only; /usr/sbin/criu stays what it is.
        "PATH": f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        **host.daemon_environment(),
    }
    # nsenter and unshare exec (no --fork), and the script execs the daemon: the child's PID is
    # the daemon's.
    daemon = subprocess.Popen(
        [
            "nsenter",
            f"--net={host.netns_path}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            DAEMON_SCRIPT,
            f"lab-{host.name}",
            *(arg for mount in host.mounts() for arg in mount),
            "--",
            *host.daemon_command(),
        ],
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=host.tree,
    )
    host.reaper_pid_file.write_text(f"{os.getpid()}\n")
    host.pid_file.write_text(f"{daemon.pid}\n")
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def configure_daemon(host: Host) -> None:
    address = f"{host.address}:{HTTPS_PORT}"
    password = host.trust_password()
    status, _ = lxd_get(host, "/1.0/storage-pools/default")
    if status == 404:
        config = {"core.https_address": address}
        if host.kind == "lxd":  # Incus has no trust passwords: ensure_trust_token below
            password = password or secrets.token_urlsafe(18)
            config["core.trust_password"] = password
        preseed = {
            "config": config,
            "storage_pools": [{"name": "default", "driver": "dir"}],
            "profiles": [
                {
                    "name": "default",
                    "devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
                }
            ],
        }
        # JSON is YAML, which is what `lxd init --preseed` (`incus admin init`) reads.
        subprocess.run(
            host.preseed_command(),
            input=json.dumps(preseed),
            text=True,
            env=host.lxc_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if host.kind == "lxd":
            write_private(host.password_file, password)
    else:
        _, server = lxd_get(host, "/1.0")
        config = server.get("metadata", {}).get("config", {})
        if config.get("core.https_address") != address:
            run([host.client, "config", "set", "core.https_address", address], env=host.lxc_env())
        if host.kind == "lxd" and (password is None or not config.get("core.trust_password")):
            password = password or secrets.token_urlsafe(18)
            run(["lxc", "config", "set", "core.trust_password", password], env=host.lxc_env())
            write_private(host.password_file, password)
    if host.kind == "incus":
        ensure_trust_token(host)


def ensure_pools(host: Host) -> None:
    """The pools of POOLS besides `default` (made by the preseed), created once per host.

    `bt`: LXD (or Incus) makes a sparse loop file of BTRFS_POOL_SIZE in the host's tree
    (/var/lib/lxd/disks/bt.img inside the host) and mounts it in the daemon's own mount
    namespace, so it goes with the host, and mounts again when the daemon restarts.
    """
    for name, driver in POOLS.items():
        status, body = lxd_get(host, f"/1.0/storage-pools/{name}")
        if status == 404 and name != "default":
            size = [f"size={BTRFS_POOL_SIZE}"] if driver == "btrfs" else []
            run([host.client, "storage", "create", name, driver, *size], env=host.lxc_env())
            status, body = lxd_get(host, f"/1.0/storage-pools/{name}")
        pool = body.get("metadata") or {}
        if status != 200 or pool.get("driver") != driver or pool.get("status") != "Created":
            raise LabError(
                f"{host.name}: storage pool {name} is not a working {driver} pool: "
                f"HTTP {status}, driver {pool.get('driver')}, status {pool.get('status')}"
            )


def image_fingerprint(meta: Path, rootfs: Path) -> str:
    # LXD names a split image by the SHA-256 of its metadata tarball followed by its rootfs.
    digest = hashlib.sha256()
    for part in (meta, rootfs):
        digest.update(part.read_bytes())
    return digest.hexdigest()


def ensure_image(host: Host, meta: Path, rootfs: Path) -> None:
    status, body = lxd_get(host, f"/1.0/images/aliases/{IMAGE_ALIAS}")
    wanted = image_fingerprint(meta, rootfs)
    if status == 200:
        current = body.get("metadata", {}).get("target")
        if current == wanted:
            return
        # The image was rebuilt (lab/lab.py changed): replace it; existing containers keep theirs.
        run([host.client, "image", "delete", current], env=host.lxc_env(), check=False)
        run([host.client, "image", "alias", "delete", IMAGE_ALIAS], env=host.lxc_env(), check=False)
    status, _ = lxd_get(host, f"/1.0/images/{wanted}")
    if status == 200:
        run([host.client, "image", "alias", "create", IMAGE_ALIAS, wanted], env=host.lxc_env())
        return
    run(
        [host.client, "image", "import", str(meta), str(rootfs), "--alias", IMAGE_ALIAS],
        env=host.lxc_env(),
    )


def ensure_host(host: Host, meta: Path, rootfs: Path) -> str:
    ensure_network(host)
    alive = process_alive(host.pid(), host.daemon)
    if alive and lxd_answers(host):
        note = "running"
    else:
        if host.pid() is None:
            note = "started"
        else:
            note = "restarted (daemon did not answer)" if alive else "restarted (daemon was gone)"
        stop_host_processes(host)  # a hung daemon, or what a dead one left (monitors, containers)
        start_daemon(host)
    configure_daemon(host)
    ensure_pools(host)
    ensure_image(host, meta, rootfs)
    return note
