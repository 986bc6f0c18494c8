"""The Redis password never appears in a page, a log line or an error: a real Redis that asks
for a password, a real worker, `manage.py doctor`, the health page with Redis down, and the
panel's own log lines."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from panel import broker
from tests.conftest import ROOT, free_port, wait_for
from tests.helpers import child_database_url
from workers.celery import app as celery_app

PASSWORD = "redis-pw-Wq7Kx2"  # planted, to be looked for


@pytest.fixture
def redis_with_password(tmp_path) -> str:
    """A Redis of this test's own that refuses clients without PASSWORD; its URL."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(port), timeout=10, what=f"redis-server on port {port}")
        yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(port: int) -> bool:
    done = subprocess.run(["redis-cli", "-p", str(port), "-a", PASSWORD, "--no-auth-warning",
                           "ping"], capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() == "PONG"


def panel_env(redis_url: str, database_url: str = "") -> dict:
    """A child process's environment on the given Redis (and the test database, SQLite or
    PostgreSQL, when it needs one)."""
    env = {**os.environ, "PANEL_REDIS_URL": redis_url}
    return {**env, "PANEL_DATABASE_URL": database_url} if database_url else env


def worker_log(redis_url: str, log_path: Path, until: str) -> str:
    """Run a real Celery worker on `redis_url` until its log shows `until`; its log."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "nothing",
         "--hostname", f"pw-{os.getpid()}@localhost", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=panel_env(redis_url), stdout=log_path.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: until in log_path.read_text(), timeout=60, interval=0.5,
                 what=f"{until!r} in the worker's log")  # fmt: skip
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    return log_path.read_text()


def test_a_worker_on_a_password_protected_redis_never_logs_the_password(
    redis_with_password, tmp_path
):
    log = worker_log(redis_with_password, tmp_path / "worker.log", "ready.")
    assert "Connected to redis://" in log
    assert PASSWORD not in log


def test_a_worker_with_a_wrong_password_says_so_without_the_password(redis_with_password, tmp_path):
    wrong = redis_with_password.replace(PASSWORD, "wrong-pw-Zx81")
    log = worker_log(wrong, tmp_path / "worker.log", "Cannot connect to redis://")
    assert "wrong-pw-Zx81" not in log and PASSWORD not in log


@pytest.mark.django_db(transaction=True)
def test_doctor_with_redis_down_names_the_address_never_the_password():
    down = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    env = panel_env(down, child_database_url())
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "FAIL redis: redis://127.0.0.1:" in output
    assert PASSWORD not in output


@pytest.fixture
def redis_down(settings):
    """The panel's settings and Celery pointed at a Redis that does not answer, with a
    password in its URL."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    before = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = celery_app.conf.broker_url = url
    yield url
    celery_app.conf.broker_url = before


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["viewer_client", "admin_client"])
def test_the_health_page_with_redis_down_shows_no_password(request, persona, redis_down):
    response = request.getfixturevalue(persona).get("/health/")
    assert response.status_code == 503
    redis = next(check for check in response.json()["checks"] if check["subject"] == "redis")
    assert not redis["ok"] and redis["detail"].startswith("redis://127.0.0.1:")
    assert PASSWORD not in response.content.decode()
    assert PASSWORD not in broker.queue_down_message()


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_the_panel_s_log_lines_never_carry_the_password(log_format):
    script = (
        "import django, logging; django.setup()\n"
        "from django.conf import settings\n"
        "log = logging.getLogger('panel.test')\n"
        "log.warning('cannot reach %s', settings.CELERY_BROKER_URL)\n"
        "try:\n    raise ConnectionError(f'refused: {settings.CELERY_BROKER_URL}')\n"
        "except ConnectionError:\n    log.exception('queue')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "panel.settings",
             "PANEL_REDIS_URL": f"redis://:{PASSWORD}@10.0.0.9:6379/0",
             "PANEL_LOG_FORMAT": log_format},
    )  # fmt: skip
    assert "cannot reach redis://[REDACTED]@10.0.0.9:6379/0" in result.stderr, result.stderr
    assert "ConnectionError: refused: redis://[REDACTED]@10.0.0.9" in result.stderr
    assert PASSWORD not in result.stderr
