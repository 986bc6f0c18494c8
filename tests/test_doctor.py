"""`manage.py doctor` against real parts: the test Redis, a real worker, the lab's hosts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from panel.models import Host
from tests.conftest import ROOT
from tests.helpers import child_database_url
from tests.lab_tools import enroll


def doctor() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "doctor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PANEL_DATABASE_URL": child_database_url()},
        timeout=120,
    )


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_doctor_reports_each_part_and_how_to_fix_what_fails(lab, celery_worker, lab_agents):
    enroll(lab["hosts"][0])
    Host.objects.create(name="ghost", endpoint="/nonexistent/unix.socket")
    result = doctor()
    print(result.stdout)
    assert "ok   database" in result.stdout and "ok   redis" in result.stdout
    assert "ok   client identity: fingerprint " in result.stdout
    assert "ok   workers: test-" in result.stdout
    assert f"ok   agent on {lab['hosts'][0]['name']}: answered" in result.stdout
    assert f"ok   host {lab['hosts'][0]['name']}: LXD 5.0.2, trusted" in result.stdout
    assert "FAIL host ghost: No LXD socket" in result.stdout
    assert result.returncode == 1
