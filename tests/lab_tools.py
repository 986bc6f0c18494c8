"""Test-side tools for the lab: the `lxc` client on a lab host's unix socket, for setting up
and for checking the truth independently of the panel (never used by the panel itself)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from panel import lxd


def lxc(lab_host: dict, *args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["lxc", *args],
        env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lxc {' '.join(args)} on {lab_host['name']}: {result.stderr}")
    return result.stdout


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def launch_counter(lab: dict, lab_host: dict, name: str) -> None:
    lxc(lab_host, "launch", lab["image_alias"], name)


def instance_status(lab_host: dict, name: str) -> str | None:
    listing = json.loads(lxc(lab_host, "list", "--format", "json", name))
    matching = [item for item in listing if item["name"] == name]
    return matching[0]["status"] if matching else None


def server_fingerprint(lab_host: dict) -> str:
    return json.loads(lxc(lab_host, "query", "/1.0"))["environment"]["certificate_fingerprint"]


def new_trust_token(lab_host: dict) -> str:
    name = unique_name("panel-test")
    lxc(lab_host, "config", "trust", "add", "--name", name)
    tokens = lxc(lab_host, "config", "trust", "list-tokens", "--format", "csv").splitlines()
    return next(line.split(",")[1] for line in tokens if line.startswith(f"{name},"))


def untrust_certificate(lab_host: dict, cert_path: str) -> None:
    fingerprint = lxd.certificate_fingerprint(Path(cert_path).read_text())
    lxc(lab_host, "config", "trust", "remove", fingerprint, check=False)


def read_file(lab_host: dict, name: str, path: str) -> str:
    # Right after a container is restored, LXD 5.0.2's file API can answer "dial unix
    # /proc/self/fd/N/forkfile.sock: connect: not a directory" while its helper starts
    # (seen once in CI after a live migration): a moment later it works.
    for _ in range(10):
        try:
            return lxc(lab_host, "file", "pull", f"{name}{path}", "-").strip()
        except AssertionError as error:
            if "forkfile.sock" not in str(error):
                raise
            time.sleep(0.5)
    return lxc(lab_host, "file", "pull", f"{name}{path}", "-").strip()


def read_counter(lab_host: dict, name: str) -> int:
    return int(read_file(lab_host, name, "/tmp/counter") or 0)


def read_boot_id(lab_host: dict, name: str) -> str:
    """A random id the counter image writes once per boot: unchanged after a real restore."""
    return read_file(lab_host, name, "/tmp/boot")


def set_criu(lab_host: dict, mode: str) -> None:
    """`fixed` (CRIU 4.1.1 via the shim) or `stock` (Debian 12's, which fails at dump)."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        ["python3", str(root / "lab" / "lab.py"), "criu", lab_host["name"], mode],
        check=True,
        capture_output=True,
    )


def enroll(lab_host: dict):
    """Register a lab host as the web flow leaves it: pinned, trusting the panel, synced."""
    from django.conf import settings

    from panel.models import Host
    from workers.hosts import sync

    pem = (Path(lab_host["lxd_dir"]) / "server.crt").read_text()
    client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    lxd.trust(lxd.Target(lab_host["url"], pem, client_cert), lab_host["trust_password"])
    host = Host.objects.create(
        name=lab_host["name"], endpoint=lab_host["url"], server_certificate=pem
    )
    sync(host)
    return host


def kill_stuck_dumps(name: str) -> list[int]:
    """Lab cleanup after a failed live migration: LXD 5.0.2 leaves the source's `criu dump`
    waiting in its action script, holding the container. Kill it by PID (found in /proc)."""
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dump" in argv and any(f"lxc.payload.{name}".encode() in arg for arg in argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


@contextlib.contextmanager
def running_counter(lab: dict, lab_host: dict, prefix: str, at_least: int = 3):
    """A counter container running on `lab_host`, its counter at `at_least` or more. On the
    way out it is removed from every lab host (with any dump a failed live migration left
    stuck), and every host is back on the working CRIU, whatever the test did."""
    from tests.conftest import wait_for  # conftest imports this module

    name = unique_name(prefix)
    launch_counter(lab, lab_host, name)
    try:
        wait_for(lambda: read_counter(lab_host, name) >= at_least, timeout=60, what="the counter")
        yield name
    finally:
        kill_stuck_dumps(name)
        for host in lab["hosts"]:
            set_criu(host, "fixed")
            lxc(host, "delete", "--force", name, check=False)


def memory_mb(lab_host: dict, name: str) -> float:
    state = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}/state"))
    return state["memory"]["usage"] / 2**20


def start_memory_churn(lab_host: dict, name: str, megabytes: int = 100) -> float:
    """One long-running busybox awk that keeps ~`megabytes` MB of strings and rewrites all of
    them in a loop: anonymous memory of one process that never forks (a dd loop would fork
    a child per pass, which LAB.md says makes dumps fail with zombies). `setsid`: a process
    started by `lxc exec` is in a session whose leader is outside the container's pid
    namespace, and CRIU refuses to dump it ("A session leader of ... is outside of its pid
    namespace")."""
    strings = megabytes * 600  # ~1 KB each, plus awk's overhead per string
    program = (f"BEGIN{{n={strings}; s=sprintf(\"%1000s\",\"\"); for(i=0;i<n;i++) a[i]=s i; "
               "t=0; while(1){t++; for(i=0;i<n;i++) a[i]=s t i}}")  # fmt: skip
    lxc(lab_host, "exec", name, "--", "sh", "-c",
        f"setsid awk '{program}' </dev/null >/dev/null 2>&1 &")  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        usage = memory_mb(lab_host, name)
        if usage >= megabytes:
            return usage
        time.sleep(1)
    raise RuntimeError(f"the memory workload reached only {usage:.0f} MiB")


@contextlib.contextmanager
def lifecycle_actions(lab_host: dict, name: str):
    """Collect LXD's lifecycle actions (`instance-paused`, `instance-shutdown`...) for one
    instance on a lab host while the block runs, from `lxc monitor` on its unix socket."""
    actions: list[str] = []
    monitor = subprocess.Popen(
        ["lxc", "monitor", "--type=lifecycle", "--format=json"],
        env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(0.5)  # let it subscribe before anything happens
    try:
        yield actions
    finally:
        time.sleep(1)  # LXD sends the last events once the instance has stopped
        monitor.terminate()
        output, _ = monitor.communicate(timeout=10)
        for line in output.splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            metadata = event.get("metadata", {})
            if metadata.get("source", "").endswith(f"/instances/{name}"):
                actions.append(metadata.get("action", ""))
