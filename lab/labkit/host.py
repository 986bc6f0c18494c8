"""One lab host: its names, paths and bookkeeping files, and its daemon's unix socket."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path

from .base import (
    CRIU_MODE_FILE,
    CRIU_MODES,
    HOSTS_DIR,
    HTTPS_PORT,
    NETNS_PREFIX,
    POOLS,
    process_alive,
)

INCUSD = "/usr/libexec/incus/incusd"  # Debian's incus-base; the `incus` client is on PATH


class Host:
    """An LXD 5.0.2 host: hostN at 10.77.0.(10+N), its tree bound onto /var/lib/lxd and
    /var/log/lxd in its own mount namespace. IncusHost changes what differs for Incus."""

    kind = "lxd"
    prefix = "host"
    first_address = 10  # hostN is 10.77.0.(10+N)
    veth_prefix = "lxdlab-h"  # root-namespace end; with the index at most 15 characters
    daemon = "lxd"  # the daemon's process name
    client = "lxc"
    dir_variable = "LXD_DIR"
    pid_name = "lxd.pid"
    agent_layout = "debian"  # PANEL_AGENT_LAYOUT for the panel's agent on this host

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"{self.prefix}{index}"
        self.address = f"10.77.0.{self.first_address + index}"
        self.netns = f"{NETNS_PREFIX}{self.name}"
        self.veth = f"{self.veth_prefix}{index}"
        self.tree = HOSTS_DIR / self.name
        self.lib = self.tree / "lib"
        self.logs = self.tree / "log"
        self.socket = self.lib / "unix.socket"
        self.pid_file = self.tree / self.pid_name
        self.reaper_pid_file = self.tree / "reaper.pid"
        self.agent_pid_file = self.tree / "agent.pid"
        self.password_file = self.tree / "trust_password"
        self.token_file = self.tree / "trust_token"

    @property
    def url(self) -> str:
        return f"https://{self.address}:{HTTPS_PORT}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def server_cert(self) -> Path:
        return self.lib / "server.crt"

    def lxc_env(self) -> dict[str, str]:
        # The daemon's unix socket is reachable from the root namespace through the host's tree.
        return dict(os.environ, **{self.dir_variable: str(self.lib)})

    def mounts(self) -> list[tuple[str, str]]:
        """(what, where) in the host's mount namespace: a folder of the host's tree bound onto
        the path the daemon uses, or "tmpfs" for a fresh tmpfs (a machine's /run)."""
        return [(str(self.lib), "/var/lib/lxd"), (str(self.logs), "/var/log/lxd")]

    def daemon_command(self) -> list[str]:
        return ["lxd", "--group", "root", "--logfile", "/var/log/lxd/lxd.log"]

    def daemon_environment(self) -> dict[str, str]:
        return {}

    def waitready_command(self) -> list[str]:
        return ["lxd", "waitready", "--timeout", "30"]

    def preseed_command(self) -> list[str]:
        return ["lxd", "init", "--preseed"]

    def daemon_log(self) -> Path:
        return self.logs / "lxd.log"

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

    def trust_token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    def as_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "url": self.url,
            "trust_password": self.trust_password(),
            "lxd_dir": str(self.lib),
            "server_cert": str(self.server_cert),
            "netns": self.netns,
            "pid": self.pid(),
            "criu": self.criu_mode(),
            "agent_pid": self.agent_pid() if process_alive(self.agent_pid()) else None,
            "pools": dict(POOLS),
        }


class IncusHost(Host):
    """An Incus 6.0.4 host: incusN at 10.77.0.(20+N), its tree bound onto /var/lib/incus and
    /var/log/incus. No trust password (Incus has none): a trust token instead."""

    kind = "incus"
    prefix = "incus"
    first_address = 20
    veth_prefix = "lxdlab-i"
    daemon = "incusd"
    client = "incus"
    dir_variable = "INCUS_DIR"
    pid_name = "incusd.pid"
    agent_layout = "incus"

    def mounts(self) -> list[tuple[str, str]]:
        # Incus keeps runtime state in /run/incus (each instance's lxc.conf and file-server
        # socket, the daemon's seccomp.socket) and a cache in /var/cache/incus: shared by two
        # hosts, the second daemon took over the first's seccomp.socket, and in a migration
        # between them the target's instance took the source's runtime folder (the source's
        # cleanup then waited ~11 s for a file server it could no longer find). So each host
        # gets its own of all four, /run/incus a fresh tmpfs per start as on a real machine.
        return [
            (str(self.lib), "/var/lib/incus"),
            (str(self.logs), "/var/log/incus"),
            (str(self.tree / "cache"), "/var/cache/incus"),
            ("tmpfs", "/run/incus"),
        ]

    def daemon_command(self) -> list[str]:
        return [INCUSD, "--group", "root", "--logfile", "/var/log/incus/incusd.log"]

    def daemon_environment(self) -> dict[str, str]:
        # By default Incus uses idmapped mounts: the rootfs stays owned by uid 0 on disk and
        # CRIU's restore fails ("Can't open fake fifo ... Permission denied"). Without them
        # Incus shifts the rootfs on disk, as LXD 5.0 does, and restores work.
        return {"INCUS_IDMAPPED_MOUNTS_DISABLE": "1"}

    def waitready_command(self) -> list[str]:
        return ["incus", "admin", "waitready", "--timeout", "30"]

    def preseed_command(self) -> list[str]:
        return ["incus", "admin", "init", "--preseed"]

    def daemon_log(self) -> Path:
        return self.logs / "incusd.log"

    def as_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "url": self.url,
            "trust_token": self.trust_token(),
            "incus_dir": str(self.lib),
            "server_cert": str(self.server_cert),
            "netns": self.netns,
            "pid": self.pid(),
            "criu": self.criu_mode(),
            "agent_pid": self.agent_pid() if process_alive(self.agent_pid()) else None,
            "pools": dict(POOLS),
        }


HOST_KINDS: dict[str, type[Host]] = {"lxd": Host, "incus": IncusHost}


def host_named(name: str) -> Host | None:
    """host3 -> Host(3), incus2 -> IncusHost(2); None for any other name."""
    for kind in HOST_KINDS.values():
        index = name.removeprefix(kind.prefix)
        if name.startswith(kind.prefix) and index.isdigit() and int(index) > 0:
            return kind(int(index))
    return None


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
