"""rediss://: the panel and an agent talk through a Redis that wants TLS and a password, the
server's certificate checked against PANEL_REDIS_CA_FILE; a wrong CA is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from panel.lxd import new_client_certificate
from tests.conftest import ROOT, free_port, stop_process

PASSWORD = "tls-redis-password-5b1e"


@pytest.fixture
def tls_redis(tmp_path):
    """A Redis of this test's own: TLS only, with a password, a certificate for 127.0.0.1."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem", "-subj", "/CN=redis",
         "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", tmp_path / "cert.pem", "--tls-key-file", tmp_path / "key.pem",
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--dir", tmp_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    try:
        yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", tmp_path / "cert.pem"
    finally:
        stop_process(server, timeout=10)


def panel_env(url: str, ca: Path | str, data: Path) -> dict:
    return {**os.environ, "PANEL_REDIS_URL": url, "PANEL_REDIS_CA_FILE": str(ca),
            "PANEL_DATA_DIR": str(data), "PANEL_SECRET_KEY": "t" * 40}  # fmt: skip


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    setup = "import django; django.setup(); "
    return subprocess.run([sys.executable, "-c", setup + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_an_agent_answers_the_panel_over_tls_with_a_password(tls_redis, tmp_path):
    url, ca = tls_redis
    lxd_dir = tmp_path / "lxd"
    lxd_dir.mkdir()
    (lxd_dir / "server.crt").write_text(new_client_certificate()[0])
    env = {**panel_env(url, ca, tmp_path / "data"), "PANEL_AGENT_LXD_DIR": str(lxd_dir),
           "DJANGO_SETTINGS_MODULE": "panel.settings"}  # fmt: skip
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        agent = subprocess.Popen([sys.executable, "-m", "workers.agent"], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        ask = (
            "from pathlib import Path; from panel.lxd import certificate_fingerprint; "
            "from panel.hosts.agent_access import queue_for, reply_id; "
            "from workers.agent import probe_task; "
            f"q = queue_for(certificate_fingerprint(Path('{lxd_dir}/server.crt').read_text())); "
            "print(sorted(probe_task.apply_async(queue=q, task_id=reply_id(q), expires=20)"
            ".get(timeout=30)))"
        )
        result = run_python(ask, env)
    finally:
        stop_process(agent, timeout=20)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "criu_check" in result.stdout
    assert PASSWORD not in log.read_text(), "the agent's log shows the Redis password"


def test_a_redis_certificate_the_ca_file_does_not_vouch_for_is_refused(tls_redis, tmp_path):
    url, _ = tls_redis
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(new_client_certificate()[0])
    env = {
        **panel_env(url, other_ca, tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "panel.settings",
    }
    result = run_python("from panel import health; f = health.redis(); print(f.ok, f.detail)", env)
    assert result.stdout.startswith("False"), result.stdout + result.stderr
    assert "certificate verify failed" in result.stdout
    assert PASSWORD not in result.stdout, "the health check shows the Redis password"
