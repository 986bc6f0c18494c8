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


def client_of(lab_host: dict) -> tuple[str, dict[str, str]]:
    """The host's own command-line client and its environment: `lxc` with LXD_DIR on an LXD
    host, `incus` with INCUS_DIR on an Incus host (state.json's `incus_hosts`)."""
    if "incus_dir" in lab_host:
        return "incus", {**os.environ, "INCUS_DIR": lab_host["incus_dir"]}
    return "lxc", {**os.environ, "LXD_DIR": lab_host["lxd_dir"]}


def lxc(lab_host: dict, *args: str, check: bool = True, timeout: float = 120) -> str:
    """The host's own client on its unix socket: `lxc` on LXD hosts, `incus` on Incus hosts
    (launch, list, file pull, delete, query, config take the same words in both)."""
    command, env = client_of(lab_host)
    result = subprocess.run(
        [command, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {' '.join(args)} on {lab_host['name']}: {result.stderr}")
    return result.stdout


def lab_trust_token(lab_host: dict, name: str | None = None) -> str:
    """A fresh single-use trust token of a lab host (`lab.py token`), LXD or Incus. Incus
    hosts have no trust password: a token is how a client certificate gets trusted there,
    sent as `POST /1.0/certificates {"type": "client", "trust_token": TOKEN}` over the
    client's TLS connection (pylxd 2.4.2's authenticate() sends it as a password, which
    Incus refuses; lab/README.md, "Incus hosts")."""
    root = Path(__file__).resolve().parent.parent
    command = ["python3", str(root / "lab" / "lab.py"), "token", lab_host["name"]]
    result = subprocess.run(
        command + (["--name", name] if name else []), check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def launch_counter(lab: dict, lab_host: dict, name: str, pool: str = "") -> None:
    """The lab's counter container; on `pool` (e.g. the btrfs pool "bt"), else the profile's."""
    lxc(lab_host, "launch", lab["image_alias"], name, *(["--storage", pool] if pool else []))


def instance_status(lab_host: dict, name: str) -> str | None:
    listing = json.loads(lxc(lab_host, "list", "--format", "json", name))
    matching = [item for item in listing if item["name"] == name]
    return matching[0]["status"] if matching else None


def server_fingerprint(lab_host: dict) -> str:
    return json.loads(lxc(lab_host, "query", "/1.0"))["environment"]["certificate_fingerprint"]


def every_lab_host(lab: dict) -> list[dict]:
    """The LXD hosts and the Incus hosts."""
    return [*lab["hosts"], *(lab.get("incus_hosts") or [])]


def new_trust_token(lab_host: dict) -> str:
    name = unique_name("panel-test")
    lxc(lab_host, "config", "trust", "add", "--name", name)
    tokens = lxc(lab_host, "config", "trust", "list-tokens", "--format", "csv").splitlines()
    return next(line.split(",")[1] for line in tokens if line.startswith(f"{name},"))


def untrust_certificate(lab_host: dict, cert_path: str) -> None:
    fingerprint = lxd.certificate_fingerprint(Path(cert_path).read_text())
    lxc(lab_host, "config", "trust", "remove", fingerprint, check=False)


# Incus's forkfile exits after 10 s without a connection and 5 s more without a request.
INCUS_FILE_SERVER_IDLE_EXIT = 16


def incus_file_server_orphaned(message: str) -> bool:
    """Incus 6.0's file API says a file server runs whose socket was deleted (lab/README.md,
    "Incus's orphaned file server"): every request while it lives waits for it and orphans
    the next one, so only INCUS_FILE_SERVER_IDLE_EXIT seconds without a request end it."""
    return "forkfile.sock: connect: no such file or directory" in message


def read_file(lab_host: dict, name: str, path: str) -> str:
    # Right after a container is restored, LXD 5.0.2's file API can answer "dial unix
    # /proc/self/fd/N/forkfile.sock: connect: not a directory" while its helper starts
    # (seen once in CI after a live migration): a moment later it works. Right after a
    # launch it once answered "Error: unexpected EOF" (2026-12-01, host1, the machine busy).
    # Incus 6.0's orphaned file server is waited out quietly instead.
    for _ in range(10):
        try:
            return lxc(lab_host, "file", "pull", f"{name}{path}", "-").strip()
        except AssertionError as error:
            if incus_file_server_orphaned(str(error)):
                time.sleep(INCUS_FILE_SERVER_IDLE_EXIT)
            elif any(words in str(error) for words in ("forkfile.sock", "unexpected EOF")):
                time.sleep(0.5)
            else:
                raise
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


def server_pem(lab_host: dict) -> str:
    return Path(lab_host.get("server_cert") or Path(lab_host["lxd_dir"]) / "server.crt").read_text()


def enroll(lab_host: dict):
    """Register a lab host as the web flow leaves it: pinned, trusting the panel, synced.
    An LXD host takes its trust password; an Incus host a fresh token (asked for only when
    the panel is not trusted yet: an unused token stays pending on the host)."""

    from panel.hosts.identity import client_cert_files
    from panel.hosts.inventory import sync
    from panel.models import Host

    pem = server_pem(lab_host)
    target = lxd.Target(lab_host["url"], pem, client_cert_files())
    if not lxd.connect(target).trusted:
        lxd.trust(target, lab_host.get("trust_password") or lab_trust_token(lab_host))
    host = Host.objects.create(
        name=lab_host["name"], endpoint=lab_host["url"], server_certificate=pem
    )
    sync(host)
    return host


def kill_stuck_dumps(name: str) -> list[int]:
    """Lab cleanup after a failed live migration: LXD 5.0.2 leaves the source's `criu dump`
    waiting in its action script, holding the container. Kill it by PID (found in /proc)."""
    from tests.fault_tools import dumps_holding

    killed = []
    for pid in dumps_holding(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


@contextlib.contextmanager
def running_counter(lab: dict, lab_host: dict, prefix: str, at_least: int = 3, pool: str = ""):
    """A counter container running on `lab_host` (LXD or Incus), on `pool`, its counter at
    `at_least` or more. On the way out it is removed from every lab host (with any dump a
    failed live migration left stuck), and every host is back on the working CRIU, whatever
    the test did."""
    from tests.conftest import wait_for  # conftest imports this module

    name = unique_name(prefix)
    launch_counter(lab, lab_host, name, pool)
    try:
        wait_for(lambda: read_counter(lab_host, name) >= at_least, timeout=60, what="the counter")
        yield name
    finally:
        kill_stuck_dumps(name)
        for host in every_lab_host(lab):
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
    command, env = client_of(lab_host)
    monitor = subprocess.Popen(
        [command, "monitor", "--type=lifecycle", "--format=json"],
        env=env,
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


@contextlib.contextmanager
def running_counters(lab: dict, lab_host: dict, prefix: str, count: int, at_least: int = 3):
    """`count` counter containers running on `lab_host` (launched one after the other, then
    waited for together); removed from every lab host on the way out, as running_counter
    does for one."""
    from tests.conftest import wait_for

    names = [unique_name(f"{prefix}{index}") for index in range(count)]
    try:
        for name in names:
            launch_counter(lab, lab_host, name)
        for name in names:
            wait_for(
                lambda n=name: read_counter(lab_host, n) >= at_least,
                timeout=60,
                what=f"the counter of {name}",
            )
        yield names
    finally:
        for name in names:
            kill_stuck_dumps(name)
            for host in lab["hosts"]:
                lxc(host, "delete", "--force", name, check=False)


def start_in_container(lab_host: dict, name: str, script: str) -> None:
    """A long-running busybox shell inside the container, detached as start_memory_churn's
    awk is (setsid, no descriptor shared with `lxc exec`). Its loops never fork: they tick
    with `read -t 1` on the image's FIFO, as the counter does (LAB.md: a fork per tick makes
    CRIU find zombies)."""
    lxc(
        lab_host,
        "exec",
        name,
        "--",
        "sh",
        "-c",
        f"setsid sh -c '{script}' </dev/null >/dev/null 2>&1 &",
    )


def start_loops(lab_host: dict, name: str, count: int = 3) -> list[tuple[str, str]]:
    """`count` extra processes, each counting in /tmp/loopN: (its count's file, its PID's)."""
    for index in range(count):
        start_in_container(
            lab_host,
            name,
            f"echo $$ > /tmp/loop{index}.pid; n=0; while :; do n=$((n+1)); "
            f"echo $n > /tmp/loop{index}; read -t 1 x <> /tmp/tick; done",
        )
    return [(f"/tmp/loop{index}", f"/tmp/loop{index}.pid") for index in range(count)]


def start_fifo_pair(lab_host: dict, name: str) -> list[tuple[str, str]]:
    """Two processes talking through a FIFO: the writer sends 1, 2, 3... once a second, the
    reader writes the last number it got to /tmp/received, which shows both at work:
    (that file, each one's PID file)."""
    lxc(lab_host, "exec", name, "--", "mkfifo", "/tmp/pipe")
    start_in_container(
        lab_host,
        name,
        "echo $$ > /tmp/reader.pid; while read line; do "
        "echo $line > /tmp/received; done < /tmp/pipe",
    )
    start_in_container(
        lab_host,
        name,
        "echo $$ > /tmp/writer.pid; exec 3> /tmp/pipe; i=0; while :; do "
        "i=$((i+1)); echo $i >&3; read -t 1 x <> /tmp/tick; done",
    )
    return [("/tmp/received", "/tmp/writer.pid"), ("/tmp/received", "/tmp/reader.pid")]


def process_alive(lab_host: dict, name: str, pid: str) -> bool:
    """Is the process with this PID (in the container's PID namespace) still there?"""
    result = subprocess.run(
        ["lxc", "exec", name, "--", "kill", "-0", pid],
        env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
        capture_output=True,
        timeout=60,
    )
    return result.returncode == 0


def lab_host_state(name: str) -> dict:
    """A lab host's entry in state.json as it is now (its daemon's PID changes on restart)."""
    root = Path(__file__).resolve().parent.parent
    state_file = Path(os.environ.get("PANEL_LAB_STATE", root / "var" / "lab" / "state.json"))
    return next(h for h in json.loads(state_file.read_text())["hosts"] if h["name"] == name)


def restart_lxd(lab_host: dict) -> tuple[float, str]:
    """Restart a lab host's LXD as a reboot (or `systemctl restart`) would: SIGTERM, which
    stops the daemon and no container (SIGKILL if it has not gone in 15 s), then `lab.py
    up` starts it again in a fresh mount namespace. The host's agent lived in the old one:
    it is started again with the same broker. Returns how long LXD was down, and how it
    was stopped."""
    root = Path(__file__).resolve().parent.parent
    lab_py = str(root / "lab" / "lab.py")
    state = lab_host_state(lab_host["name"])
    agent = agent_command(state.get("agent_pid"))
    stopped_at = time.monotonic()
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{state['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    how = f"SIGTERM, gone after {time.monotonic() - stopped_at:.1f} s"
    if Path(f"/proc/{state['pid']}").exists():
        os.kill(state["pid"], signal.SIGKILL)
        how = "SIGTERM, then SIGKILL after 15 s"
    subprocess.run(["python3", lab_py, "up"], check=True, capture_output=True, timeout=300)
    down = time.monotonic() - stopped_at
    if agent is not None:
        python, redis_url = agent
        start = ["agents", "start", "--host", lab_host["name"], "--python", python]
        subprocess.run(["python3", lab_py, *start, "--redis-url", redis_url],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
    return down, how


def agent_command(pid: int | None) -> tuple[str, str] | None:
    """The Python and the broker of a running lab agent (to start it again alike)."""
    if not pid:
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    redis_url = next(
        (e[len(b"PANEL_REDIS_URL=") :] for e in environ if e.startswith(b"PANEL_REDIS_URL=")), None
    )
    if redis_url is None or not argv[0]:
        return None
    return argv[0].decode(), redis_url.decode()
