"""Benchmark: the operation progress endpoint under 100 concurrent pollers, served by gunicorn.

Target (from the issue): the progress endpoint under 100 concurrent pollers served by
gunicorn: requests per second and p99 latency.

    .venv/bin/python bench/progress_pollers.py [--duration 12] [--connections 100] [--only-default]

GET /operations/<pk>/progress/ with `HX-Request: true` is what htmx polls once a second on the
operation page. This benchmark seeds a throwaway SQLite database (never var/panel.sqlite3),
logs an operator in by creating a session row, starts gunicorn for real (`panel.wsgi`, bound
to 127.0.0.1 on a free port, logging like bin/panel does) with the same PANEL_* environment,
and drives it with `wrk` (the Debian package; installed with apt-get when missing and run as
root). For each gunicorn configuration it measures, with the same wrk settings:

- the progress of a RUNNING operation (200, the fragment with the cancel form),
- the progress of a finished operation (286, which tells htmx to stop polling),
- GET /healthz (one `SELECT 1`, no session, no template) as the baseline the figures are read
  against: the ratio says how much the session, the user, the row and the template cost.

wrk's closed loop keeps all connections busy, so its latency is mostly queueing. A last,
paced run per configuration shows the latency a real page sees: 100 pollers in this process
(asyncio), each polling once a second like htmx's `every 1s`, at random phases, sending its
request as soon as its connection is open and reusing it when gunicorn keeps it alive, as a
browser does. (wrk's own `delay()` is not used for that: wrk opens the next connection first
and then waits, and an idle open connection holds a sync worker until its request comes.)
A wrk Lua script counts every status code: a redirect to the login page (a lost session) is a
3xx that wrk would not report as an error.

In the same process, django.test.Client counts the SQL queries of each request per persona.
Prints figures; asserts nothing about them. Traffic goes only to 127.0.0.1; no LXD is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _common

POLLERS = 100  # the 100 pollers, each asking once a second: 100 requests per second
WRK_THREADS = 2
WRK_TIMEOUT = "10s"  # wrk's default (2 s) drops slow answers from the latency figures
WARMUP_SECONDS = 2
IN_PROCESS_RUNS = 300
MARKER = "BENCH_JSON "

CONFIGURATIONS = [
    ("sync, 2 workers (bin/panel default)", ["--workers", "2"]),
    ("sync, 4 workers", ["--workers", "4"]),
    ("gthread, 2 workers x 4 threads", ["--workers", "2", "--worker-class", "gthread",
                                        "--threads", "4"]),
]  # fmt: skip

# Counts status codes per wrk thread and prints one JSON line at the end.
WRK_SCRIPT = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("codes")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local statuses = {}
  for status, count in pairs(totals) do
    table.insert(statuses, string.format('"%%d": %%d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests": %%.0f, "duration_us": %%.0f, "bytes": %%.0f, '
    .. '"errors": {"connect": %%.0f, "read": %%.0f, "write": %%.0f, "status": %%.0f, '
    .. '"timeout": %%.0f}, "latency_us": {"mean": %%.1f, "max": %%.0f, "p50": %%.0f, '
    .. '"p75": %%.0f, "p90": %%.0f, "p99": %%.0f}, "statuses": {%%s}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), table.concat(statuses, ", ")))
end
"""


def isolate() -> Path:
    """A fresh folder for the database, secret key and static files, shared with gunicorn
    through the environment; any PANEL_* variable of the caller is dropped."""
    folder = Path(tempfile.mkdtemp(prefix="panel-bench-pollers-"))
    for name in [name for name in os.environ if name.startswith("PANEL_")]:
        del os.environ[name]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "panel.settings",
            "PANEL_DATA_DIR": str(folder),
            "PANEL_DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "PANEL_DEBUG": "false",
            # 127.0.0.1 for gunicorn, testserver for django.test.Client in this process.
            "PANEL_ALLOWED_HOSTS": "127.0.0.1,testserver",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    configured = Path(settings.DATABASES["default"]["NAME"])
    if configured.parent != folder:
        raise RuntimeError(f"refusing to run: the database would be {configured}, not in {folder}")
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return folder


@dataclass
class Rows:
    users: dict  # persona -> User
    running_pk: int
    finished_pk: int


def seed() -> Rows:
    """An admin, an operator and a viewer; a host with LXD's full facts, a container, a running
    operation, a finished one, and 2,000 older operations so the table is not empty."""
    import datetime as dt

    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from panel.access import OPERATORS_GROUP
    from panel.models import Host, Instance, Operation

    now = timezone.now()
    operator = User.objects.create_user("operator")
    operator.groups.add(Group.objects.get_or_create(name=OPERATORS_GROUP)[0])
    users = {
        "admin": User.objects.create_superuser("admin", "admin@localhost", None),
        "operator": operator,
        "viewer": User.objects.create_user("viewer"),
    }
    host = Host.objects.create(
        name="lxd01",
        endpoint="https://10.77.0.11:8443",
        status=Host.Status.ONLINE,
        server_version="5.0.2",
        facts={
            "server": "lxd",
            "server_version": "5.0.2",
            "driver": "lxc | qemu",
            "kernel_version": "6.1.0-28-amd64",
            "architectures": ["x86_64", "i686"],
            "storage": "zfs",
            # LXD 5.0.2 reports 318 API extensions; sync stores them all in Host.facts.
            "api_extensions": [f"api_extension_number_{i:03d}" for i in range(318)],
        },
        last_contact=now,
    )
    instance = Instance.objects.create(host=host, name="web-00001", status="Running")
    common = {"instance": instance, "instance_name": instance.name, "source_host": host,
              "requested_by": operator, "kind": Operation.Kind.STATEFUL_SNAPSHOT,
              "params": {"name": "snap0"}}  # fmt: skip
    Operation.objects.bulk_create(
        Operation(
            **common,
            status=Operation.Status.SUCCEEDED,
            stage="done",
            queued_at=now - dt.timedelta(hours=index + 1),
            started_at=now - dt.timedelta(hours=index + 1),
            finished_at=now - dt.timedelta(hours=index + 1) + dt.timedelta(seconds=40),
            outcome="Snapshot taken with the running state.",
        )
        for index in range(2000)
    )
    finished = Operation.objects.create(
        **common,
        status=Operation.Status.SUCCEEDED,
        stage="done",
        queued_at=now - dt.timedelta(minutes=3),
        started_at=now - dt.timedelta(minutes=3),
        finished_at=now - dt.timedelta(minutes=2),
        outcome="Snapshot snap0 taken with the container's running state (CRIU).",
    )
    running = Operation.objects.create(
        **common,
        status=Operation.Status.RUNNING,
        stage="checkpoint",
        progress_text="Dumping the container's memory: 412 MB of 1.0 GB",
        progress_fraction=0.4,
        lxd_operation_ids=["c3f1d2a4-0000-4000-8000-000000000001"],
        may_cancel=True,
        queued_at=now - dt.timedelta(seconds=43),
        started_at=now - dt.timedelta(seconds=42),
        heartbeat_at=now,
    )
    return Rows(users=users, running_pk=running.pk, finished_pk=finished.pk)


def progress_url(pk: int) -> str:
    from django.urls import reverse

    return reverse("operation-progress", kwargs={"pk": pk})


def median_ms(action) -> str:
    seconds = []
    for _ in range(IN_PROCESS_RUNS):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return f"{statistics.median(seconds) * 1000:.3f}"


def in_process(rows: Rows) -> tuple[list[tuple], list[str], list[tuple]]:
    """Queries and time per request through django.test.Client (no HTTP, no gunicorn), the
    SQL of the operator's poll, and what the parts of that poll cost on their own."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from panel.models import Operation

    targets = [
        ("progress, running", progress_url(rows.running_pk), 200),
        ("progress, finished", progress_url(rows.finished_pk), 286),
    ]
    table, operator_sql = [], []
    for persona, user in rows.users.items():
        client = Client(headers={"HX-Request": "true"})
        client.force_login(user)
        for label, url, expected in targets:
            client.get(url)  # the first request sets the CSRF cookie and fills caches
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            # Read now: every request_started signal empties the connection's query log.
            sql = [query["sql"] for query in queries.captured_queries]
            timing = median_ms(lambda client=client, url=url: client.get(url))
            if persona == "operator" and expected == 200:
                operator_sql = sql
            status = str(response.status_code)
            if response.status_code != expected:
                status += f" (expected {expected})"
            table.append((persona, label, status, len(sql), f"{len(response.content)} B",
                          timing))  # fmt: skip
    client = Client(headers={"HX-Request": "true"})
    client.force_login(rows.users["operator"])
    url = progress_url(rows.running_pk)
    client.get(url)

    def poll_on_new_connection() -> None:
        connection.close()  # what CONN_MAX_AGE=0 does at the end of every request
        client.get(url)

    table.append(("operator", "progress, running, new connection per request (as gunicorn)",
                  "200", len(operator_sql), "", median_ms(poll_on_new_connection)))  # fmt: skip
    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz")
    count = len(queries)
    timing = median_ms(lambda: client.get("/healthz"))
    table.append(("anonymous", "healthz", str(response.status_code), count,
                  f"{len(response.content)} B", timing))  # fmt: skip

    def reconnect() -> None:
        connection.close()
        connection.ensure_connection()

    pk = rows.running_pk
    related = Operation.objects.select_related("source_host", "target_host", "requested_by")
    parts = [
        ("new SQLite connection + init_command (CONN_MAX_AGE=0: once per request)",
         median_ms(reconnect)),
        ("the operation as get_operation reads it (select_related host, host, user)",
         median_ms(lambda: related.get(pk=pk))),
        ("the operation alone (Operation.objects.get(pk=...))",
         median_ms(lambda: Operation.objects.get(pk=pk))),
    ]  # fmt: skip
    connection.close()
    return table, operator_sql, parts


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("wrk is missing: install the Debian package `wrk` (apt-get install wrk).")
    _common.progress("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return shutil.which("wrk") or "wrk"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_binary() -> str:
    beside = Path(sys.executable).parent / "gunicorn"
    return str(beside if beside.exists() else _common.ROOT / ".venv" / "bin" / "gunicorn")


def version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "?"


class Gunicorn:
    """gunicorn serving panel.wsgi on 127.0.0.1 as bin/panel starts it, plus `extra` options."""

    def __init__(self, folder: Path, name: str, extra: list[str]) -> None:
        self.port = free_port()
        self.error_log = folder / f"web-{name}.log"
        command = [gunicorn_binary(), "panel.wsgi", "--bind", f"127.0.0.1:{self.port}", *extra,
                   "--access-logfile", str(folder / f"access-{name}.log"),
                   "--error-logfile", str(self.error_log)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=_common.ROOT, env=dict(os.environ))

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited ({self.process.returncode}): {self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if get(self.port, "/healthz", {})[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"gunicorn did not answer /healthz in {seconds:.0f} s: {self.log_tail()}"
        )

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers, from /proc (all threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if entry.name == str(self.process.pid) or fields[1] == str(self.process.pid):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def errors_logged(self) -> int:
        text = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
        return len(re.findall(r"\[(?:ERROR|CRITICAL)\]|Traceback|WORKER TIMEOUT", text))

    def log_tail(self) -> str:
        if not self.error_log.exists():
            return "(no error log)"
        return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=35)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def get(port: int, path: str, headers: dict) -> tuple[int, dict, bytes]:
    """One request, redirects not followed, so a login redirect shows as a 302."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@dataclass
class Run:
    configuration: str
    endpoint: str
    expected: int
    requests: int = 0
    seconds: float = 0.0
    latency_us: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    non_2xx_3xx: int = 0
    socket_errors: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0  # the load generator's (wrk, or this process for paced pollers)
    machine_cpu: float = 0.0  # every process on the machine, from /proc/stat

    @property
    def other_cpu_percent(self) -> float:
        """What other processes (a test run, another benchmark) took, in % of all cores."""
        other = self.machine_cpu - self.server_cpu - self.client_cpu
        return max(other, 0.0) / self.seconds / (os.cpu_count() or 1) * 100

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def unexpected(self) -> int:
        return self.requests - self.statuses.get(self.expected, 0)


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores), steal included."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    wrk: str, script: Path, url: str, headers: list[str], seconds: int, connections: int
) -> tuple[dict, str]:
    command = [wrk, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency",
               "--timeout", WRK_TIMEOUT, "-s", str(script)]  # fmt: skip
    for header in headers:
        command += ["-H", header]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next((line for line in result.stdout.splitlines() if line.startswith(MARKER)), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    return json.loads(line[len(MARKER) :]), result.stdout


def measure(
    server: Gunicorn, wrk: str, script: Path, configuration: str, endpoint: str, path: str,
    headers: list[str], expected: int, seconds: int, connections: int,
) -> Run:  # fmt: skip
    _common.progress(f"{configuration}: {endpoint}, {connections} connections, {seconds} s")
    cpu_before, machine_before = server.cpu_seconds(), machine_cpu_seconds()
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures, text = run_wrk(wrk, script, server.base() + path, headers, seconds, connections)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return Run(
        configuration=configuration,
        endpoint=endpoint,
        expected=expected,
        requests=int(figures["requests"]),
        seconds=figures["duration_us"] / 1e6,
        latency_us=figures["latency_us"],
        statuses={int(status): count for status, count in figures["statuses"].items()},
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        server_cpu=server.cpu_seconds() - cpu_before,
        machine_cpu=machine_cpu_seconds() - machine_before,
        client_cpu=(wrk_after.ru_utime + wrk_after.ru_stime)
        - (wrk_before.ru_utime + wrk_before.ru_stime),
    )


def paced_pollers(
    server: Gunicorn, configuration: str, path: str, cookie: str, pollers: int, seconds: int
) -> Run:
    """`pollers` browsers polling `path` once a second each; see the module docstring."""
    _common.progress(f"{configuration}: {pollers} paced pollers, {seconds} s")
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nCookie: {cookie}\r\n"
               "HX-Request: true\r\nAccept: */*\r\n\r\n").encode()  # fmt: skip
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    rng = random.Random(1)  # noqa: S311 (phases, not secrets)

    async def exchange(connection):
        """One request; returns its status and the connection if it may be reused."""
        for attempt in (1, 2):  # a kept-alive connection the server has just closed: reopen
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", server.port)
            reader, writer = connection
            try:
                writer.write(request)
                await writer.drain()
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                connection = None
                if attempt == 2:
                    raise
                continue
            headers = dict(line.lower().split(":", 1) for line in head[1:] if ":" in line)
            length = headers.get("content-length")
            await (reader.readexactly(int(length)) if length else reader.read())
            if not length or headers.get("connection", "").strip() == "close":
                writer.close()
                connection = None
            return int(head[0].split()[1]), connection
        raise AssertionError("unreachable")

    async def poller(start: float, end: float, loop) -> None:
        connection, tick = None, start + rng.random()
        while tick < end:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            began = time.perf_counter()
            try:
                status, connection = await exchange(connection)
            except (OSError, asyncio.IncompleteReadError):  # counted as status 0
                status, connection = 0, None
            latencies.append(time.perf_counter() - began)
            statuses[status] += 1
            tick += 1.0
            while tick < loop.time():  # htmx does not catch up on polls it missed
                tick += 1.0
        if connection is not None:
            connection[1].close()

    async def all_pollers() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        await asyncio.gather(*(poller(start, start + seconds, loop) for _ in range(pollers)))

    cpu_before, machine_before = server.cpu_seconds(), machine_cpu_seconds()
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    asyncio.run(all_pollers())
    elapsed = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    values = sorted(latency * 1e6 for latency in latencies)

    def percentile(rank: float) -> float:
        return values[max(math.ceil(rank / 100 * len(values)) - 1, 0)]  # nearest rank

    return Run(
        configuration=configuration,
        endpoint="progress, running, paced",
        expected=200,
        requests=len(values),
        seconds=elapsed,
        latency_us={"mean": statistics.fmean(values), "max": values[-1], "p50": percentile(50),
                    "p75": percentile(75), "p90": percentile(90), "p99": percentile(99)},
        statuses=dict(statuses),
        server_cpu=server.cpu_seconds() - cpu_before,
        client_cpu=(self_after.ru_utime + self_after.ru_stime)
        - (self_before.ru_utime + self_before.ru_stime),
        machine_cpu=machine_cpu_seconds() - machine_before,
    )  # fmt: skip


def preflight(server: Gunicorn, targets: list[tuple[str, str, list[str], int]]) -> None:
    """One request per endpoint before the load: the status and the body must be the real
    fragment, not a login redirect, a 400 for the Host header or a 500."""
    for label, path, headers, expected in targets:
        as_dict = dict(header.split(": ", 1) for header in headers)
        status, response_headers, body = get(server.port, path, as_dict)
        problem = ""
        if status != expected:
            problem = f"answered {status} (Location: {response_headers.get('Location', '-')})"
        elif "progress" in path and "operation-" not in body.decode(errors="replace"):
            problem = "did not answer the progress fragment"
        if expected == 286 and response_headers.get("HX-Refresh") != "true":
            problem = "answered 286 without HX-Refresh: true"
        if problem:
            raise RuntimeError(f"{label} {path} {problem} (expected {expected}): {body[:300]!r}")


def ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f}"


def statuses_text(run: Run) -> str:
    text = ", ".join(f"{status}x{count}" for status, count in sorted(run.statuses.items()))
    return text + (f" ({run.unexpected} UNEXPECTED)" if run.unexpected else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=12, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=POLLERS)
    parser.add_argument(
        "--only-default", action="store_true", help="only bin/panel's configuration (2 sync)"
    )
    arguments = parser.parse_args()
    configurations = CONFIGURATIONS[:1] if arguments.only_default else CONFIGURATIONS
    wrk = ensure_wrk()

    _common.progress("preparing a throwaway database and static files")
    folder = isolate()
    runs: list[Run] = []
    paced: list[Run] = []
    logged_errors: dict[str, int] = {}
    try:
        rows = seed()
        _common.progress("counting queries in process")
        queries, operator_sql, parts = in_process(rows)

        from django.test import Client

        client = Client(headers={"HX-Request": "true"})
        client.force_login(rows.users["operator"])
        client.get(progress_url(rows.running_pk))  # a browser would hold this CSRF cookie
        cookie = "; ".join(f"{name}={client.cookies[name].value}"
                           for name in ("sessionid", "csrftoken"))  # fmt: skip
        from django.db import connection

        connection.close()

        polling = [f"Cookie: {cookie}", "HX-Request: true"]
        targets = [
            ("progress, running", progress_url(rows.running_pk), polling, 200),
            ("progress, finished", progress_url(rows.finished_pk), polling, 286),
            ("healthz (baseline)", "/healthz", [], 200),
        ]
        script = folder / "count-statuses.lua"
        script.write_text(WRK_SCRIPT % {"marker": MARKER})

        for number, (configuration, extra) in enumerate(configurations):
            _common.progress(f"starting gunicorn: {configuration}")
            server = Gunicorn(folder, str(number), extra)
            try:
                server.wait_healthy()
                preflight(server, targets)
                run_wrk(wrk, script, server.base() + targets[0][1], polling,
                        WARMUP_SECONDS, arguments.connections)  # fmt: skip
                for endpoint, path, headers, expected in targets:
                    runs.append(measure(server, wrk, script, configuration, endpoint, path,
                                        headers, expected, arguments.duration,
                                        arguments.connections))  # fmt: skip
                paced.append(paced_pollers(server, configuration, targets[0][1], cookie,
                                           arguments.connections, arguments.duration))  # fmt: skip
            finally:
                server.stop()
                logged_errors[configuration] = server.errors_logged()
    finally:
        _common.discard(folder)

    report(arguments, configurations, runs, paced, queries, operator_sql, parts, logged_errors)


def report(
    arguments, configurations, runs: list[Run], paced: list[Run], queries: list[tuple],
    operator_sql: list[str], parts: list[tuple], logged_errors: dict[str, int],
) -> None:  # fmt: skip
    _common.print_table(
        ["machine", ""],
        [
            *_common.machine(),
            ("gunicorn", version([gunicorn_binary(), "--version"])),
            ("wrk", version(["wrk", "--version"])),
        ],
    )
    print(
        f"wrk -t{WRK_THREADS} -c{arguments.connections} -d{arguments.duration}s --timeout "
        f"{WRK_TIMEOUT} against gunicorn on 127.0.0.1 (same machine: wrk takes CPU from the "
        f"server); session of an operator (in the operators group), HX-Request: true, with the "
        f"CSRF cookie a browser holds. Latency in ms. Headroom = rps / {POLLERS} "
        f"(the rate {POLLERS} pollers need at one poll per second).\n"
    )
    baseline = {run.configuration: run.rps for run in runs if run.endpoint.startswith("healthz")}
    _common.print_table(
        ["configuration", "endpoint", "rps", "p50", "p90", "p99", "max", "non-2xx/3xx",
         "socket err", "statuses", "server CPU ms/req", "wrk CPU %", "other CPU %",
         "vs healthz", "headroom"],
        [
            (
                run.configuration, run.endpoint, f"{run.rps:.0f}", ms(run.latency_us["p50"]),
                ms(run.latency_us["p90"]), ms(run.latency_us["p99"]), ms(run.latency_us["max"]),
                run.non_2xx_3xx, run.socket_errors, statuses_text(run),
                f"{run.server_cpu * 1000 / max(run.requests, 1):.2f}",
                f"{run.client_cpu / run.seconds * 100:.0f}", f"{run.other_cpu_percent:.0f}",
                "" if run.endpoint.startswith("healthz")
                else f"{run.rps / baseline[run.configuration]:.2f}",
                "" if run.endpoint.startswith("healthz") else f"x{run.rps / POLLERS:.1f}",
            )
            for run in runs
        ],
    )  # fmt: skip
    disturbed = [run for run in [*runs, *paced] if run.other_cpu_percent > 10]
    if disturbed:
        print(f"WARNING: other processes took more than 10% of the CPU during {len(disturbed)} "
              "run(s) (column 'other CPU %'): those figures are low; rerun on a quiet "
              "machine. 'server CPU ms/req' is the figure least affected.\n")  # fmt: skip
    print(f"The realistic load: {arguments.connections} pollers, each polling the running "
          "operation once a second at a random phase (as htmx's `every 1s` on open pages), "
          "for the same duration. Latency includes the TCP connect when gunicorn closed the "
          "connection (sync workers always do).\n")  # fmt: skip
    _common.print_table(
        ["configuration", "rps", "p50", "p75", "p90", "p99", "max", "statuses",
         "server CPU ms/req", "server busy (% of all cores)", "other CPU %"],
        [(run.configuration, f"{run.rps:.0f}", ms(run.latency_us["p50"]),
          ms(run.latency_us["p75"]), ms(run.latency_us["p90"]), ms(run.latency_us["p99"]),
          ms(run.latency_us["max"]), statuses_text(run),
          f"{run.server_cpu * 1000 / max(run.requests, 1):.2f}",
          f"{run.server_cpu / run.seconds / (os.cpu_count() or 1) * 100:.0f}",
          f"{run.other_cpu_percent:.0f}") for run in paced],
    )  # fmt: skip
    _common.print_table(
        ["gunicorn configuration", "errors in its error log"],
        [(configuration, logged_errors.get(configuration, "?")) for configuration, _ in
         configurations],
    )  # fmt: skip
    print(f"In process (django.test.Client, no HTTP): median of {IN_PROCESS_RUNS} requests.\n")
    _common.print_table(
        ["persona", "endpoint", "status", "SQL queries", "body", "median ms"], queries
    )
    print("The SQL of one poll of the running operation by the operator:\n")
    for number, sql in enumerate(operator_sql, 1):
        print(f"{number}. {sql if len(sql) <= 300 else sql[:300] + ' ...'}")
    print()
    _common.print_table(["part of a poll, in process", "median ms"], parts)


if __name__ == "__main__":
    main()
