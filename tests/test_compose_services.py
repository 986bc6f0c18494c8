"""Each docker-compose.yml service's own command and healthcheck, run for real on this
machine against the suite's database (PostgreSQL in bin/test's first run) and Redis, since no
Docker engine runs here: migrate, web behind the TLS proxy, worker, beat and Redis itself."""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import requests
from django.conf import settings

from panel.models import AuditEvent
from tests.compose_tools import ROOT, command, environment, healthcheck, run_check
from tests.conftest import free_port, stop_process, wait_for
from tests.helpers import child_database_url

pytestmark = pytest.mark.timeout(180)


def redis_db_9() -> str:
    """The suite's Redis, database 9: these workers never take the session's jobs."""
    return settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/9"


@pytest.fixture
def dotenv(tmp_path) -> dict[str, str]:
    """What an admin puts in .env for compose."""
    return {
        "PANEL_SECRET_KEY": secrets.token_urlsafe(40), "POSTGRES_PASSWORD": "unused-here",
        "REDIS_PASSWORD": "compose-redis-password",
        "PANEL_ALLOWED_HOSTS": "panel.example.org,127.0.0.1",
        "PANEL_CSRF_TRUSTED_ORIGINS": "https://127.0.0.1", "PANEL_DOMAIN": "unused-here",
        "PANEL_WEB_WORKERS": "1", "PANEL_WORKER_CONCURRENCY": "1",
    }  # fmt: skip


def panel_env(service: str, dotenv: dict, tmp_path: Path, database_url: str, **extra) -> dict:
    return environment(
        service, dotenv, PANEL_DATABASE_URL=database_url, PANEL_REDIS_URL=redis_db_9(),
        PANEL_DATA_DIR=str(tmp_path / "data"), PANEL_STATIC_ROOT=str(settings.STATIC_ROOT), **extra,
    )  # fmt: skip


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def fresh_database(tmp_path):
    """An empty database beside the test one, for the migrate service to build."""
    url = child_database_url()
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    parts, name = urlsplit(url), f"test_compose_{secrets.token_hex(4)}"
    admin = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.mark.django_db
def test_the_migrate_service_builds_an_empty_database_once(dotenv, tmp_path, fresh_database):
    env = panel_env("migrate", dotenv, tmp_path, fresh_database)
    argv = command("migrate", dotenv).split()
    first = run_check(argv, env)
    assert first.returncode == 0, first.stderr
    assert "Applying panel.0001_initial... OK" in first.stdout
    again = run_check(argv, env)
    assert again.returncode == 0 and "No migrations to apply" in again.stdout


def start_web(dotenv: dict, tmp_path: Path, database_url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = command("web", dotenv, {"0.0.0.0:8000": f"127.0.0.1:{port}"}).split()
    web = start(argv, panel_env("web", dotenv, tmp_path, database_url), tmp_path / "web.log")
    wait_for(lambda: port_open(port), timeout=30, what=f"the web service (log {tmp_path})")
    return web, port


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.django_db(transaction=True)
def test_the_web_healthcheck_passes_on_a_healthy_web_and_fails_without_its_database(
    dotenv, tmp_path
):
    web, port = start_web(dotenv, tmp_path, child_database_url())
    try:
        check = healthcheck("web", dotenv, {"127.0.0.1:8000": f"127.0.0.1:{port}"})
        result = run_check(check, environment("web", dotenv))
        assert result.returncode == 0, result.stderr
        # Only the probe is exempt: a page asked by IP over plain HTTP is still refused.
        login = f"http://127.0.0.1:{port}/accounts/login/"
        response = requests.get(login, allow_redirects=False, timeout=10)
        assert response.status_code == 301 and response.headers["Location"].startswith("https")
    finally:
        stop_process(web, timeout=20)
    nowhere = f"postgres://panel:x@127.0.0.1:{free_port()}/panel"
    web, port = start_web(dotenv, tmp_path, nowhere)
    try:
        check = healthcheck("web", dotenv, {"127.0.0.1:8000": f"127.0.0.1:{port}"})
        assert run_check(check, environment("web", dotenv)).returncode != 0
    finally:
        stop_process(web, timeout=20)


@pytest.mark.django_db(transaction=True)
def test_the_worker_and_beat_run_and_their_healthchecks_pass(dotenv, tmp_path):
    hostname = socket.gethostname()
    env = panel_env("worker", dotenv, tmp_path, child_database_url(), HOSTNAME=hostname)
    worker = start(command("worker", dotenv).split(), env, tmp_path / "worker.log")
    beat_pid = tmp_path / "beat.pid"
    beat_argv = command("beat", dotenv, {"/data/": f"{tmp_path}/", "/tmp/beat.pid": str(beat_pid)})
    beat = start(beat_argv.split(), panel_env("beat", dotenv, tmp_path, child_database_url()),
                 tmp_path / "beat.log")  # fmt: skip
    try:
        ping = healthcheck("worker", dotenv, {})
        wait_for(lambda: run_check(ping, env).returncode == 0, timeout=60, interval=1,
                 what="the worker's healthcheck to pass")  # fmt: skip
        alive = healthcheck("beat", dotenv, {"/tmp/beat.pid": str(beat_pid)})
        wait_for(lambda: beat_pid.exists() and run_check(alive, env).returncode == 0,
                 timeout=30, what="beat's healthcheck to pass")  # fmt: skip
    finally:
        stop_process(worker, timeout=30)
        stop_process(beat, timeout=10)
    assert run_check(healthcheck("worker", dotenv, {}), env).returncode != 0, "ping a dead worker"


def start_redis(dotenv: dict, folder: Path, port: int) -> subprocess.Popen:
    line = command("redis", dotenv, {"/data": str(folder), "/tmp/users.acl": str(folder / "tmp"),
                                     "exec redis-server": f"exec redis-server --port {port} "
                                     "--bind 127.0.0.1"})  # fmt: skip
    argv = ["sh", "-c", line.split("sh -c ", 1)[1].strip("'")]
    server = start(argv, environment("redis", dotenv), folder / "redis.log")
    wait_for(lambda: port_open(port), timeout=10, what="the redis service")
    return server


def test_the_redis_service_wants_its_password_and_keeps_the_agents_users(dotenv, tmp_path):
    port = free_port()
    server = start_redis(dotenv, tmp_path, port)
    try:
        ping = healthcheck("redis", dotenv, {})
        ping[1:1] = ["-p", str(port)]
        assert run_check(ping, environment("redis", dotenv)).stdout.strip() == "PONG"
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port).ping()
        panel = redis.Redis(port=port, password=dotenv["REDIS_PASSWORD"])
        panel.execute_command("ACL", "SETUSER", "agent.0123456789abcdef", "on", ">agent-pw",
                              "~agent.0123456789abcdef*", "+brpop")  # fmt: skip
        panel.acl_save()
    finally:
        stop_process(server, timeout=10)
    dotenv["REDIS_PASSWORD"] = "a-new-password"
    server = start_redis(dotenv, tmp_path, port)
    try:
        assert redis.Redis(port=port, password="a-new-password").ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, password="compose-redis-password").ping()
        agent = redis.Redis(port=port, username="agent.0123456789abcdef", password="agent-pw")
        assert agent.brpop(["agent.0123456789abcdef"], timeout=0.1) is None
    finally:
        stop_process(server, timeout=10)


def serves_tls(browser: requests.Session, url: str, root: Path) -> bool:
    try:
        return root.exists() and browser.get(url, timeout=5).status_code == 200
    except requests.exceptions.SSLError:
        return False
    except requests.exceptions.ConnectionError:
        return False


@pytest.mark.django_db(transaction=True)
def test_through_the_tls_proxy_a_login_works_and_the_audit_names_the_real_client(
    dotenv, tmp_path, django_user_model
):
    django_user_model.objects.create_superuser("ada", password="s3cret-pass-word")
    https, http, admin = free_port(), free_port(), free_port()
    dotenv["PANEL_CSRF_TRUSTED_ORIGINS"] = f"https://127.0.0.1:{https}"
    web, web_port = start_web(dotenv, tmp_path, child_database_url())
    caddy_env = {
        **environment("proxy", dotenv), "PANEL_DOMAIN": f"https://127.0.0.1:{https}",
        "PANEL_UPSTREAM": f"127.0.0.1:{web_port}", "CADDY_HTTPS_PORT": str(https),
        "CADDY_HTTP_PORT": str(http), "CADDY_ADMIN": f"127.0.0.1:{admin}",
        "XDG_DATA_HOME": str(tmp_path / "caddy"), "XDG_CONFIG_HOME": str(tmp_path / "caddy"),
        "HOME": str(tmp_path),
    }  # fmt: skip
    proxy = start(["caddy", "run", "--config", str(ROOT / "deploy" / "Caddyfile"),
                   "--adapter", "caddyfile"], caddy_env, tmp_path / "caddy.log")  # fmt: skip
    try:
        root = tmp_path / "caddy" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        base = f"https://127.0.0.1:{https}"
        browser = requests.Session()
        browser.trust_env = False  # or REQUESTS_CA_BUNDLE would replace the proxy's root
        browser.verify = str(root)
        # The site's certificate is issued a moment after the root.
        wait_for(lambda: serves_tls(browser, f"{base}/healthz", root), timeout=30, what="caddy")
        page = browser.get(f"{base}/accounts/login/", timeout=10)
        assert page.status_code == 200
        token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        login = browser.post(
            f"{base}/accounts/login/",
            data={"csrfmiddlewaretoken": token, "username": "ada", "password": "s3cret-pass-word"},
            headers={"Referer": f"{base}/accounts/login/", "X-Forwarded-For": "203.0.113.5"},
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 302, login.text[:500]
        assert browser.cookies.get("sessionid") and "Secure" in login.headers["Set-Cookie"]
        event = AuditEvent.objects.get(action="login")
        assert event.address == "127.0.0.1", "the client's forged X-Forwarded-For was believed"
        plain = requests.get(f"http://127.0.0.1:{http}/", allow_redirects=False, timeout=10)
        assert plain.status_code in (301, 308) and plain.headers["Location"].startswith("https")
    finally:
        stop_process(proxy, timeout=10)
        stop_process(web, timeout=20)
