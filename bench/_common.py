"""What every benchmark shares: a throwaway data folder and database, the machine's
description, and plain-text tables.

Import this module before anything from Django or the panel: `isolate()` points the panel's
settings at a temporary folder (database, secret key, static files, client certificate), so
a benchmark never touches var/panel.sqlite3 or the developer's certificate.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Other work on the machine (a test run, a lab operation) shows in the figures: say so.
LOAD_AT_START = os.getloadavg()


def isolate(name: str) -> Path:
    """Point the panel at a fresh temporary folder, set Django up and migrate.

    Must run before the first import of django.conf.settings.
    """
    if "django.conf" in sys.modules and "panel.settings" in sys.modules:
        raise RuntimeError("isolate() must run before the panel's settings are loaded")
    folder = Path(tempfile.mkdtemp(prefix=f"panel-bench-{name}-"))
    database = folder / "bench.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "panel.settings"
    os.environ["PANEL_DATA_DIR"] = str(folder)
    os.environ["PANEL_DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["PANEL_DEBUG"] = "false"
    # django.test.Client sends Host: testserver; setup_test_environment() is not used because
    # its template instrumentation would add its own cost to every render being timed.
    os.environ["PANEL_ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    configured = Path(settings.DATABASES["default"]["NAME"])
    if configured.parent != folder:
        raise RuntimeError(f"refusing to run: the database would be {configured}, not in {folder}")
    call_command("migrate", verbosity=0)
    return folder


def discard(folder: Path) -> None:
    """Close the database and delete the temporary folder (database, WAL, key, certificates)."""
    from django.db import connections

    connections.close_all()
    shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine() -> list[tuple[str, str]]:
    import django

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(os.cpu_count())),
        ("cpu", cpu_model or platform.processor() or "?"),
        ("python", platform.python_version()),
        ("django", django.get_version()),
        ("sqlite", sqlite3.sqlite_version),
        ("commit", _commit()),
        ("load average at start / end", f"{_load(LOAD_AT_START)} / {_load(os.getloadavg())}"),
    ]


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def _commit() -> str:
    """The checked-out commit, and whether the working tree differs from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head} (working tree modified)" if dirty else head


def print_machine() -> None:
    print_table(["machine", ""], machine())


def print_table(headers: list[str], rows: list[tuple | list]) -> None:
    """A Markdown table: readable in a terminal, pasteable into docs/benchmarks.md."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    print()


def milliseconds(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    return {
        "median": statistics.median(values),
        "p95": values[math.ceil(0.95 * len(values)) - 1],  # nearest rank
        "min": values[0],
        "max": values[-1],
    }


class FullCollections:
    """Counts CPython's full (generation 2) garbage collections while active: each one
    pauses the process for tens of milliseconds and explains most outliers."""

    def __init__(self) -> None:
        self.count = 0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            self.count += 1

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info) -> None:
        gc.callbacks.remove(self._callback)


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the results."""
    print(f"... {message}", file=sys.stderr, flush=True)


def start_redis_and_worker(
    folder: Path, port: int, name: str, concurrency: int = 2
) -> list[subprocess.Popen]:
    """A private Redis on `port` and a real Celery worker on it, for benchmarks that run the
    panel for real (PANEL_REDIS_URL must already point at that port). Stop them with
    `stop(processes)`."""
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "panel",
         "--hostname", f"{name}-{os.getpid()}@localhost", "--concurrency", str(concurrency),
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=os.environ.copy(), stdout=(folder / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    from workers.celery import app

    for _ in range(120):
        if app.control.ping(timeout=0.5):
            return [worker, redis]
    stop([worker, redis])
    raise RuntimeError(f"the Celery worker did not answer (log: {folder / 'worker.log'})")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def lxc(lab_host: dict, *args: str, check: bool = True, timeout: float = 300) -> str:
    """The lxc CLI on a lab host's unix socket, as an admin on the host runs it; its output.
    `check=False` for a clean-up that may find nothing to remove."""
    env = {**os.environ, "LXD_DIR": lab_host["lxd_dir"]}
    return subprocess.run(["lxc", *args], env=env, check=check, capture_output=True, text=True,
                          timeout=timeout).stdout  # fmt: skip


def lab_state(hosts: int = 2) -> dict:
    """The lab's state file, or a clear exit when the lab is not up."""
    state_file = ROOT / "var" / "lab" / "state.json"
    if not state_file.exists():
        raise SystemExit(f"The lab is not up ({state_file} is missing): python3 lab/lab.py up")
    state = json.loads(state_file.read_text())
    if len(state["hosts"]) < hosts:
        raise SystemExit(
            f"This benchmark needs {hosts} lab hosts: python3 lab/lab.py up --hosts {hosts}"
        )
    return state
