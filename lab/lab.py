#!/usr/bin/env python3
"""The project's test lab: N real LXD hosts with working CRIU on this one machine.

    python3 lab/lab.py up [--hosts N]     bring the lab up (idempotent; repairs what is missing)
    python3 lab/lab.py down [--purge]     stop everything; --purge also deletes the host trees
    python3 lab/lab.py status [--json]    what runs, and whether LXD answers
    python3 lab/lab.py criu HOST stock|fixed
    python3 lab/lab.py agents start|stop [--python PY] [--redis-url URL] [--host H]

Standard library only: it runs with the system python3 before any venv exists.
Why each step is done the way it is: /work/shared/LAB.md, summarised in lab/README.md.
All state lives under <repo>/var/lab/; var/lab/state.json is the contract with the project.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "var" / "lab"
STATE_FILE = LAB / "state.json"
CACHE = LAB / "cache"
APT_DIR = LAB / "apt"
CRIU_PREFIX = LAB / "criu-prefix"
BIN = LAB / "bin"
IMAGE_DIR = LAB / "image"
HOSTS_DIR = LAB / "hosts"
SHIM_SOURCE = Path(__file__).resolve().parent / "criu-shim.sh"

BRIDGE = "lxdlab0"
BRIDGE_ADDRESS = "10.77.0.1"
PREFIX_LEN = 24
NETNS_PREFIX = "lxdlab-"
IMAGE_ALIAS = "counter"
HTTPS_PORT = 8443
DEFAULT_HOSTS = 2

SYSTEM_PACKAGES = ["lxd", "lxd-client", "iptables", "busybox-static", "criu", "uidmap"]
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
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
CRIU_MODES = ("fixed", "stock")
CRIU_MODE_FILE = "lab-criu-mode"  # under the host's lib tree = /var/lib/lxd inside the host

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
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd,
        text=True,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    if check and result.returncode != 0:
        output = (result.stdout or "").strip()
        raise LabError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{output}")
    return result


# ---------------------------------------------------------------- preflight and packages


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


# ---------------------------------------------------------------- private CRIU 4.1.1


def system_mirror_uri() -> str:
    """The Debian mirror this machine's own apt sources name (never hard-coded in the repo)."""
    candidates: list[tuple[str, list[str]]] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    list_files = [Path("/etc/apt/sources.list")]
    if sources_d.is_dir():
        list_files += sorted(sources_d.glob("*.list"))
    for path in list_files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb":
                candidates.append((words[1], [words[2]]))
    for uri, suites in candidates:
        # The main archive, not the security one: that is the one that also carries trixie.
        if "security" not in uri and any(not s.endswith("-security") for s in suites):
            return uri.rstrip("/")
    raise LabError("no Debian mirror found in /etc/apt/sources.list{,.d/}")


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
    state, cache = APT_DIR / "state", APT_DIR / "cache"
    for folder in (state / "lists" / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    sources = APT_DIR / "sources.list"
    # Signatures stay checked: bookworm's debian-archive-keyring already carries trixie's keys.
    sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {mirror} trixie main\n")
    # A private apt: own sources, own lists and cache, no system preferences. The system's
    # sources, lists, cache and dpkg database are left untouched (dpkg status is only read).
    options = [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        "Dir::Etc::Preferences=/dev/null",
        "-o",
        "Dir::Etc::PreferencesParts=/dev/null",
        "-o",
        f"Dir::State={state}",
        "-o",
        f"Dir::Cache={cache}",
        "-o",
        "Acquire::Languages=none",
        # The download folder belongs to root; apt's _apt sandbox user could not write to it.
        "-o",
        "APT::Sandbox::User=root",
    ]
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


# ---------------------------------------------------------------- the counter image


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


# ---------------------------------------------------------------- hosts


class Host:
    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"host{index}"
        self.address = f"10.77.0.{10 + index}"
        self.netns = f"{NETNS_PREFIX}{self.name}"
        self.veth = f"lxdlab-h{index}"  # root-namespace end; at most 15 characters
        self.tree = HOSTS_DIR / self.name
        self.lib = self.tree / "lib"
        self.logs = self.tree / "log"
        self.socket = self.lib / "unix.socket"
        self.pid_file = self.tree / "lxd.pid"
        self.reaper_pid_file = self.tree / "reaper.pid"
        self.agent_pid_file = self.tree / "agent.pid"
        self.password_file = self.tree / "trust_password"

    @property
    def url(self) -> str:
        return f"https://{self.address}:{HTTPS_PORT}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    def lxc_env(self) -> dict[str, str]:
        # The daemon's unix socket is reachable from the root namespace through the host's tree.
        return dict(os.environ, LXD_DIR=str(self.lib))

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def agent_pid(self) -> int | None:
        try:
            return int(self.agent_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def reaper_pid(self) -> int | None:
        try:
            return int(self.reaper_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def criu_mode(self) -> str:
        try:
            mode = (self.lib / CRIU_MODE_FILE).read_text().strip()
        except OSError:
            return "fixed"
        return mode if mode in CRIU_MODES else "fixed"

    def set_criu_mode(self, mode: str) -> None:
        self.lib.mkdir(parents=True, exist_ok=True)
        (self.lib / CRIU_MODE_FILE).write_text(mode + "\n")

    def trust_password(self) -> str | None:
        try:
            return self.password_file.read_text().strip() or None
        except OSError:
            return None

    def as_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "url": self.url,
            "trust_password": self.trust_password(),
            "lxd_dir": str(self.lib),
            "netns": self.netns,
            "pid": self.pid(),
            "criu": self.criu_mode(),
            "agent_pid": self.agent_pid() if process_alive(self.agent_pid()) else None,
        }


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


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def lxd_get(host: Host, path: str, timeout: float = 5.0) -> tuple[int, dict]:
    connection = UnixHTTPConnection(host.socket, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def lxd_answers(host: Host) -> bool:
    try:
        status, _ = lxd_get(host, "/1.0", timeout=3)
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return status == 200


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(cmd, check=False).returncode == 0


def ensure_bridge() -> None:
    if not link_exists(BRIDGE):
        log(f"creating bridge {BRIDGE} {BRIDGE_ADDRESS}/{PREFIX_LEN}")
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if f" {BRIDGE_ADDRESS}/" not in addresses:
        run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def ensure_network(host: Host) -> None:
    if not host.netns_path.exists():
        run(["ip", "netns", "add", host.netns])
    if not link_exists(host.veth):
        # The peer lands in the host's namespace as eth0, like a real machine's NIC.
        if link_exists("eth0", host.netns):
            run(["ip", "-n", host.netns, "link", "del", "eth0"])
        run(
            [
                "ip",
                "link",
                "add",
                host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            ]
        )
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    addresses = run(["ip", "-n", host.netns, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f" {host.address}/" not in addresses:
        run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/{PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])


# Each host: its own network namespace, entered with nsenter (`ip netns exec` remounts /sys and
# hides the cgroup v1 hierarchy: migrations then fail with "freezing the container failed");
# then its own mount namespace, made private, with the host's tree bound onto /var/lib/lxd and
# /var/log/lxd so every host sees the same paths as a real machine does (with different
# LXD_DIRs on one filesystem, host2 -> host1 restores failed on shmounts). Separate network
# namespaces also keep liblxc's abstract command sockets apart ("already running" otherwise).
DAEMON_SCRIPT = """set -e
mount --make-rprivate /
mount --bind "$1" /var/lib/lxd
mount --bind "$2" /var/log/lxd
exec lxd --group root --logfile /var/log/lxd/lxd.log
"""


def start_daemon(host: Host) -> None:
    for folder in (host.lib, host.logs, Path("/var/lib/lxd"), Path("/var/log/lxd")):
        folder.mkdir(parents=True, exist_ok=True)
    host.lib.chmod(0o711)
    if not (host.lib / CRIU_MODE_FILE).exists():
        host.set_criu_mode("fixed")
    for stale in (host.socket, host.pid_file, host.reaper_pid_file):
        stale.unlink(missing_ok=True)  # left by a killed daemon
    with open(host.tree / "daemon.out", "ab") as out:
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_reaper", host.name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=host.tree,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while host.pid() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    result = run(["lxd", "waitready", "--timeout", "30"], check=False, env=host.lxc_env())
    if result.returncode != 0 or not process_alive(host.pid(), "lxd"):
        tail = ""
        for log_file in (host.tree / "daemon.out", host.logs / "lxd.log"):
            if log_file.exists():
                tail += "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"{host.name}: LXD did not become ready\n{result.stdout}\n{tail}")


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
    }
    # nsenter and unshare exec (no --fork), and the script execs lxd: the child's PID is lxd's.
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
            str(host.lib),
            str(host.logs),
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
    password = host.trust_password()
    status, _ = lxd_get(host, "/1.0/storage-pools/default")
    if status == 404:
        password = password or secrets.token_urlsafe(18)
        preseed = {
            "config": {
                "core.https_address": f"{host.address}:{HTTPS_PORT}",
                "core.trust_password": password,
            },
            "storage_pools": [{"name": "default", "driver": "dir"}],
            "profiles": [
                {
                    "name": "default",
                    "devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
                }
            ],
        }
        # JSON is YAML, which is what `lxd init --preseed` reads.
        subprocess.run(
            ["lxd", "init", "--preseed"],
            input=json.dumps(preseed),
            text=True,
            env=host.lxc_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        write_private(host.password_file, password)
        return
    _, server = lxd_get(host, "/1.0")
    config = server.get("metadata", {}).get("config", {})
    if config.get("core.https_address") != f"{host.address}:{HTTPS_PORT}":
        run(
            ["lxc", "config", "set", "core.https_address", f"{host.address}:{HTTPS_PORT}"],
            env=host.lxc_env(),
        )
    if password is None or not config.get("core.trust_password"):
        password = password or secrets.token_urlsafe(18)
        run(["lxc", "config", "set", "core.trust_password", password], env=host.lxc_env())
        write_private(host.password_file, password)


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")


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
        run(["lxc", "image", "delete", current], env=host.lxc_env(), check=False)
        run(["lxc", "image", "alias", "delete", IMAGE_ALIAS], env=host.lxc_env(), check=False)
    status, _ = lxd_get(host, f"/1.0/images/{wanted}")
    if status == 200:
        run(["lxc", "image", "alias", "create", IMAGE_ALIAS, wanted], env=host.lxc_env())
        return
    run(
        ["lxc", "image", "import", str(meta), str(rootfs), "--alias", IMAGE_ALIAS],
        env=host.lxc_env(),
    )


def ensure_host(host: Host, meta: Path, rootfs: Path) -> str:
    ensure_network(host)
    alive = process_alive(host.pid(), "lxd")
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
    ensure_image(host, meta, rootfs)
    return note


# ---------------------------------------------------------------- stopping


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
    mnt_ino = ns_inode(f"/proc/{daemon}/ns/mnt") if process_alive(daemon, "lxd") else None
    if process_alive(daemon, "lxd"):
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

    Those of the lab's current containers always; when no LXD daemon runs at all, also those of
    deleted containers (liblxc leaks some in the unified hierarchy after restores) and its
    shared scratch cgroup lxc.pivot. rmdir only ever succeeds on an empty cgroup.
    """
    no_lxd_runs = not any(process_alive(pid, "lxd") for pid in all_pids())

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
    indexes = set()
    if HOSTS_DIR.is_dir():
        for tree in HOSTS_DIR.iterdir():
            if tree.name.startswith("host") and tree.name[4:].isdigit():
                indexes.add(int(tree.name[4:]))
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for ns in netns_dir.iterdir():
            rest = ns.name.removeprefix(f"{NETNS_PREFIX}host")
            if ns.name.startswith(NETNS_PREFIX) and rest.isdigit():
                indexes.add(int(rest))
    return [Host(i) for i in sorted(indexes)]


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


# ---------------------------------------------------------------- agents


def start_agent(host: Host, python: str, redis_url: str) -> str:
    """The panel's host agent (workers/agent.py) for one lab host, as it would run on a real
    host: inside the host's mount namespace, so /var/lib/lxd and /var/log/lxd are that host's
    trees, but in the root network namespace, where Redis answers on 127.0.0.1. dmesg and
    uname are machine-wide here anyway (all lab hosts share one kernel)."""
    stop_agent(host)
    daemon = host.pid()
    if not process_alive(daemon, "lxd"):
        raise LabError(f"{host.name}: LXD is not running; run `lab.py up` first")
    env = {
        **os.environ,
        "PANEL_REDIS_URL": redis_url,
        "PANEL_AGENT_LAYOUT": "debian",
        # The lab's LXD uses the shim (CRIU 4.1.1, or stock per host); the agent checks that.
        "PANEL_AGENT_CRIU": str(BIN / "criu"),
        "PYTHONUNBUFFERED": "1",
    }
    with open(host.tree / "agent.log", "ab") as out:
        # nsenter execs (no --fork): the recorded PID is the agent's own.
        agent = subprocess.Popen(
            [
                "nsenter",
                f"--mount=/proc/{daemon}/ns/mnt",
                f"--wd={REPO}",  # entering a mount namespace resets the working directory
                "--",
                os.path.abspath(python),
                "-m",
                "workers.agent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    host.agent_pid_file.write_text(f"{agent.pid}\n")
    time.sleep(0.5)
    if agent.poll() is not None:
        tail = (host.tree / "agent.log").read_text(errors="replace").splitlines()[-10:]
        raise LabError(f"{host.name}: the agent exited at once:\n" + "\n".join(tail))
    return f"{host.name}: agent pid {agent.pid} on {redis_url} (log {host.tree / 'agent.log'})"


def stop_agent(host: Host) -> str:
    pid = host.agent_pid()
    host.agent_pid_file.unlink(missing_ok=True)
    if not process_alive(pid):
        return f"{host.name}: no agent running"
    os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
    return f"{host.name}: agent {pid} stopped"


# ---------------------------------------------------------------- state


def write_state(hosts: list[Host]) -> dict:
    state = {
        "hosts": [h.as_state() for h in hosts],
        "image_alias": IMAGE_ALIAS,
        "bridge": BRIDGE,
        "bridge_address": BRIDGE_ADDRESS,
    }
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(STATE_FILE)
    return state


def read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def state_hosts() -> list[Host]:
    state = read_state()
    if not state:
        return []
    return [Host(int(h["name"][4:])) for h in state["hosts"]]


# ---------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    preflight()
    ensure_system_packages()
    ensure_criu()
    ensure_shim()
    meta, rootfs = ensure_image_files()
    existing = state_hosts()
    count = args.hosts if args.hosts is not None else max(DEFAULT_HOSTS, len(existing))
    if count < 1:
        raise LabError("--hosts must be at least 1")
    hosts = [Host(i) for i in range(1, count + 1)]
    for extra in [h for h in known_hosts() if h.index > count]:
        log(take_down(extra) + " (beyond --hosts)")
    ensure_bridge()
    for host in hosts:
        note = ensure_host(host, meta, rootfs)
        log(f"{host.name}: {note}, {host.url}, pid {host.pid()}, criu {host.criu_mode()}")
    write_state(hosts)
    log(f"lab up: {count} hosts in {time.monotonic() - started:.1f}s; state in {STATE_FILE}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    preflight()
    hosts = sorted(
        {h.name: h for h in known_hosts() + state_hosts()}.values(), key=lambda h: h.index
    )
    for host in hosts:
        log(stop_agent(host))
        log(take_down(host))
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])
    removed = remove_stale_cgroups(container_names(hosts))
    if removed:
        log(f"removed {removed} empty container cgroups")
    for point in reversed(lab_mounts()):
        run(["umount", "-l", point], check=False)
    STATE_FILE.unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(HOSTS_DIR, ignore_errors=True)
        log(f"purged {HOSTS_DIR} (download cache, CRIU prefix and image kept)")
    log("lab down")
    return 0


def host_status(host: Host) -> dict[str, object]:
    alive = process_alive(host.pid(), "lxd")
    answering = alive and lxd_answers(host)
    instances = None
    if answering:
        _, body = lxd_get(host, "/1.0/instances")
        instances = len(body.get("metadata") or [])
    return {"pid_alive": alive, "lxd_answering": answering, "instances": instances}


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        if args.json:
            print(json.dumps({"hosts": [], "up": False}, indent=2))
        else:
            print("lab is down (no var/lab/state.json); run: python3 lab/lab.py up")
        return 1
    healthy = True
    for entry in state["hosts"]:
        host = Host(int(entry["name"][4:]))
        entry.update(host_status(host))
        entry["criu"] = host.criu_mode()
        healthy = healthy and bool(entry["lxd_answering"])
    state["up"] = healthy
    if args.json:
        print(json.dumps(state, indent=2))
        return 0 if healthy else 1
    print(f"bridge {state['bridge']} {state['bridge_address']}, image alias {state['image_alias']}")
    print(f"{'host':<7} {'address':<12} {'pid':>8} {'alive':<6} {'lxd':<6} {'criu':<6} instances")
    for e in state["hosts"]:
        print(
            f"{e['name']:<7} {e['address']:<12} {e['pid'] or '-':>8} "
            f"{'yes' if e['pid_alive'] else 'NO':<6} {'yes' if e['lxd_answering'] else 'NO':<6} "
            f"{e['criu']:<6} {'-' if e['instances'] is None else e['instances']}"
        )
    return 0 if healthy else 1


def cmd_criu(args: argparse.Namespace) -> int:
    hosts = {h.name: h for h in state_hosts()}
    if args.host not in hosts:
        raise LabError(f"unknown host {args.host!r}; lab hosts: {', '.join(hosts) or 'none'}")
    host = hosts[args.host]
    host.set_criu_mode(args.mode)  # read by the shim at each call: takes effect immediately
    write_state(list(hosts.values()))
    log(f"{host.name}: criu {args.mode}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    hosts = [h for h in state_hosts() if not args.host or h.name in args.host]
    if not hosts:
        raise LabError("no lab hosts: run `lab.py up` first (or check --host)")
    for host in hosts:
        if args.action == "start":
            log(start_agent(host, args.python, args.redis_url))
        else:
            log(stop_agent(host))
    write_state(state_hosts())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lab.py", description="Real LXD hosts with CRIU for the panel's tests."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    up = commands.add_parser("up", help="bring the lab up (idempotent)")
    up.add_argument(
        "--hosts",
        type=int,
        default=None,
        help=f"number of LXD hosts (default {DEFAULT_HOSTS}, or as many as are up)",
    )
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", help="stop every daemon, container and namespace")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the host trees (containers, images, config)",
    )
    down.set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="show hosts and liveness")
    status.add_argument("--json", action="store_true", help="state.json plus liveness, as JSON")
    status.set_defaults(func=cmd_status)
    criu = commands.add_parser("criu", help="switch a host between stock and fixed CRIU")
    criu.add_argument("host", metavar="HOST", help="host1, host2, ...")
    criu.add_argument("mode", choices=CRIU_MODES, metavar="stock|fixed")
    criu.set_defaults(func=cmd_criu)
    agents = commands.add_parser("agents", help="start or stop the panel's agent on lab hosts")
    agents.add_argument("action", choices=("start", "stop"))
    agents.add_argument(
        "--python",
        default=str(REPO / ".venv" / "bin" / "python"),
        help="the virtualenv python (default .venv/bin/python)",
    )
    agents.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the panel's Redis (PANEL_REDIS_URL)",
    )
    agents.add_argument("--host", action="append", help="only this host (repeatable)")
    agents.set_defaults(func=cmd_agents)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_reaper"] and len(argv) == 2:  # internal: see run_reaper
        return run_reaper(Host(int(argv[1].removeprefix("host"))))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
