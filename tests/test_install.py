"""Setup on the machines LXD users have: Python 3.11 to 3.13 (Debian 12 and 13, Ubuntu 24.04),
a .env that bin/panel reads as compose does, and the systemd units for the panel and the agent
(verified by systemd itself, the agent's command run for real)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from panel.hosts.agent_access import queue_for, reply_id
from panel.lxd import certificate_fingerprint, new_client_certificate
from tests.conftest import ROOT, free_port, stop_process

PYENV = Path.home() / ".pyenv" / "versions"
UNITS = ROOT / "deploy" / "systemd"


def lib(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source bin/lib.sh; {script}"], cwd=ROOT,
                          env=env or dict(os.environ), capture_output=True, text=True)  # fmt: skip


def interpreter(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}.*/bin/python3"))
    assert found, f"no Python {version} under {PYENV} to try the version gate with"
    return found[-1]


@pytest.mark.parametrize(("version", "accepted"), [("3.10", False), ("3.11", True),
                                                    ("3.12", True), ("3.13", True)])  # fmt: skip
def test_python_3_11_to_3_13_are_accepted_and_others_refused(version, accepted):
    result = lib(f"python_supported {interpreter(version)}")
    assert (result.returncode == 0) is accepted, (version, result.stderr)


def test_the_dotenv_file_is_data_the_environment_wins_and_empty_means_default(tmp_path):
    marker = tmp_path / "ran"
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n\n"
        "PANEL_BIND=127.0.0.1:8123\n"
        'export PANEL_TIME_ZONE="Europe/Paris"\n'
        "PANEL_BUNDLE_REDACT_PATTERNS=[\"corp-[0-9]+\", 'x y']\n"
        f"PANEL_LOG_LEVEL=$(touch {marker})\n"
        "PANEL_DATABASE_URL=\n"
        "PANEL_WEB_WORKERS=7\r\n"
        "PANEL_DEBUG=from-file\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANEL_")}
    env["PANEL_DEBUG"] = "false"
    result = lib(f"load_dotenv {dotenv} && env", env)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["PANEL_BIND"] == "127.0.0.1:8123" and seen["PANEL_TIME_ZONE"] == "Europe/Paris"
    assert seen["PANEL_BUNDLE_REDACT_PATTERNS"] == "[\"corp-[0-9]+\", 'x y']"
    assert seen["PANEL_LOG_LEVEL"] == f"$(touch {marker})" and not marker.exists()
    assert "PANEL_DATABASE_URL" not in seen, "an empty value must leave the default"
    assert seen["PANEL_WEB_WORKERS"] == "7" and seen["PANEL_DEBUG"] == "false"


def test_a_line_that_is_not_a_setting_stops_with_its_number(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PANEL_BIND=127.0.0.1:1\nthis is not a setting\n")
    result = lib(f"load_dotenv {dotenv}")
    assert result.returncode != 0 and f"{dotenv}, line 2" in result.stderr


def test_bin_panel_reads_its_env_file_before_anything_else():
    script = (ROOT / "bin" / "panel").read_text()
    assert 'load_dotenv "${PANEL_ENV_FILE:-$ROOT/.env}"' in script
    assert script.index("load_dotenv") < script.index("ensure_virtualenv")


def installed(unit: str, tmp_path: Path) -> Path:
    """The unit as it would be installed, with this checkout in place of /opt/lxd-panel."""
    text = (UNITS / unit).read_text().replace("/opt/lxd-panel", str(ROOT))
    text = text.replace("/etc/lxd-panel/agent.env", str(tmp_path / "agent.env"))
    (tmp_path / unit).write_text(text)
    return tmp_path / unit


@pytest.mark.parametrize("unit", ["lxd-panel.service", "lxd-panel-agent.service"])
def test_systemd_accepts_each_unit(unit, tmp_path):
    (tmp_path / "agent.env").touch()
    result = subprocess.run(["systemd-analyze", "verify", str(installed(unit, tmp_path))],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_agent_units_command_serves_its_hosts_queue(tmp_path):
    lxd_dir = tmp_path / "lxd"
    lxd_dir.mkdir()
    (lxd_dir / "server.crt").write_text(new_client_certificate()[0])
    redis_url = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/6"
    (tmp_path / "agent.env").write_text(
        f"PANEL_REDIS_URL={redis_url}\nPANEL_AGENT_LXD_DIR={lxd_dir}\n"
    )
    unit = installed("lxd-panel-agent.service", tmp_path).read_text()
    argv = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE).group(1).split()
    env_file = re.search(r"^EnvironmentFile=(.+)$", unit, re.MULTILINE).group(1)
    env = {**os.environ, **dict(line.split("=", 1)
                                for line in Path(env_file).read_text().splitlines())}  # fmt: skip
    env["PANEL_DATA_DIR"] = str(tmp_path / "data")
    agent = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        queue = queue_for(certificate_fingerprint((lxd_dir / "server.crt").read_text()))
        ask = (
            "from workers.agent import probe_task; "
            f"print(sorted(probe_task.apply_async(queue='{queue}', task_id='{reply_id(queue)}', "
            "expires=20).get(timeout=30)))"
        )
        run = [sys.executable, "-c", f"import django; django.setup(); {ask}"]
        result = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert "criu_check" in result.stdout, result.stderr[-2000:]
    finally:
        stop_process(agent, timeout=20)


def test_bin_tests_postgres_is_a_private_cluster_that_a_second_run_reuses(tmp_path):
    # pytest's tmp_path is under a folder only root may enter: the cluster moves to its own.
    port, folder = free_port(), tmp_path / "pg"
    start = f"start_postgres {port} {folder}"
    result = lib(
        f'{start} && echo "url=$PANEL_DATABASE_URL" && echo "dir=$PG_DIR"'
        " && psql \"$PANEL_DATABASE_URL\" -tAc 'SHOW fsync'"
        f" && {start} && stop_postgres"
    )
    lines = result.stdout.splitlines()
    cluster = Path(next((line for line in lines if line.startswith("dir=")), "dir=")[4:])
    try:
        assert result.returncode == 0, result.stderr
        password = (cluster / "password").read_text()
        assert f"url=postgres://panel:{password}@127.0.0.1:{port}/panel" in lines
        assert "off" in lines  # a test cluster: no fsync
        assert "Using the PostgreSQL already running" in result.stdout, "not reused"
        assert oct((cluster / "password").stat().st_mode & 0o777) == "0o600"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "stop_postgres left it running"
    finally:
        if cluster.name.startswith("panel-test-pg-"):  # outside tmp_path: remove it ourselves
            subprocess.run(["rm", "-rf", str(cluster)], check=True)
