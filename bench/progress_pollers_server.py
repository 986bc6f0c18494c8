"""bench/progress_pollers.py: gunicorn serving the panel as bin/panel starts it, wrk
installed if missing, one plain request, and the pre-flight check of every endpoint.
Not run on its own."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import _common


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
