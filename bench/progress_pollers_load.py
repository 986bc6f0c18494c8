"""bench/progress_pollers.py: the load and what each run measured: wrk's closed loop (with
a Lua script counting every status code) and the paced pollers that poll once a second as
htmx does. Not run on its own."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _common
from progress_pollers_server import Gunicorn

WRK_THREADS = 2
WRK_TIMEOUT = "10s"  # wrk's default (2 s) drops slow answers from the latency figures
MARKER = "BENCH_JSON "

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
    round: int = 1  # endpoints are measured in alternation, a round each in turn
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
