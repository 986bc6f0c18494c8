"""Settings come from the environment; a bad value stops the start with the variable named."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from panel.env import Env, secret_key_from

ROOT = Path(__file__).resolve().parent.parent


def run_check(**environ: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **environ}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PANEL_DEBUG", "ture"),
        ("PANEL_LXD_TIMEOUT", "soon"),
        ("PANEL_LOG_LEVEL", "LOUD"),
        ("PANEL_DATABASE_URL", "nosuchdb://x"),
        ("PANEL_SECRET_KEY", "short"),
        ("PANEL_IDENTITY_KEY", "short"),
        ("PANEL_REDIS_URL", "http://127.0.0.1:6379/0"),
        ("PANEL_TRUSTED_PROXIES", "-1"),
        ("PANEL_FILE_STORAGE", "s3"),
    ],
)
def test_it_refuses_to_start_with_a_bad_value_and_names_the_variable(name, value):
    result = run_check(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_it_starts_with_no_environment_at_all(tmp_path):
    result = run_check(PANEL_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_debug_is_off_unless_asked():
    assert Env({}).bool("PANEL_DEBUG", False) is False
    assert Env({"PANEL_DEBUG": "yes"}).bool("PANEL_DEBUG", False) is True


def test_it_reads_lists_and_whole_numbers():
    env = Env({"HOSTS": " a.example , b.example,", "N": "7"})
    assert env.list("HOSTS", []) == ["a.example", "b.example"]
    assert env.int("N", 1) == 7
    with pytest.raises(ImproperlyConfigured, match="N="):
        Env({"N": "0"}).int("N", 1, minimum=1)


def test_it_generates_a_private_secret_key_once_and_keeps_it(tmp_path):
    first = secret_key_from(Env({}), tmp_path)
    second = secret_key_from(Env({}), tmp_path)
    key_file = tmp_path / "secret_key"
    assert first == second
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [key_file]


def test_a_given_secret_key_wins_and_nothing_is_written(tmp_path):
    key = "k" * 40
    assert secret_key_from(Env({"PANEL_SECRET_KEY": key}), tmp_path) == key
    assert not (tmp_path / "secret_key").exists()


def test_the_production_settings_pass_djangos_deploy_check(tmp_path):
    # A production environment, not the test session's: the browser tests set
    # DJANGO_ALLOW_ASYNC_UNSAFE for Playwright, which the deploy check rightly flags.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_ALLOW_ASYNC_UNSAFE" and not k.startswith("PANEL_HSTS")
    }
    env = {
        **inherited,
        "PANEL_DATA_DIR": str(tmp_path),
        "PANEL_SECURE": "true",  # HSTS, secure cookies and the redirect follow from it
        "PANEL_ALLOWED_HOSTS": "panel.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
