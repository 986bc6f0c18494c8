"""The shell command speaks JSON (--json: what the API answers) and adds, confirms and
removes hosts as the web and the API do, with the same forms and roles."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from panel.models import Host
from tests.helpers import make_host, make_instance
from tests.test_hosts import a_certificate

pytestmark = pytest.mark.django_db


def shell(*args: str) -> str:
    out = io.StringIO()
    call_command("panel", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_lists_come_out_as_the_apis_json(admin_user):
    instance = make_instance(make_host("h1"), "c1", ipv4="10.0.3.5 (eth0)")
    hosts = json.loads(shell("--json", "hosts"))
    assert hosts[0]["name"] == "h1" and hosts[0]["capabilities"]
    containers = json.loads(shell("--json", "containers", "--host", "h1"))
    assert containers[0]["id"] == instance.pk and containers[0]["ipv4"] == "10.0.3.5 (eth0)"
    started = json.loads(shell("--json", "run", admin_user.username, "h1", "c1", "stop"))
    assert started["kind"] == "stop" and started["status"] == "pending"
    assert started["phases"] == ["stopping", "verifying"]
    listed = json.loads(shell("--json", "operations"))
    assert [operation["id"] for operation in listed] == [started["id"]]


def test_an_admin_adds_confirms_and_removes_a_host_from_the_shell(
    admin_user, tmp_path, monkeypatch
):
    added = json.loads(shell("--json", "host-add", admin_user.username, "h9",
                             "https://h9.example:8443"))  # fmt: skip
    assert added["status"] == "enrolling"
    assert added["enrollment"] == Host.Enrollment.FETCHING_CERTIFICATE
    Host.objects.filter(name="h9").update(
        enrollment=Host.Enrollment.AWAITING_CONFIRMATION,
        offered_certificate=a_certificate(tmp_path),
    )  # as the worker leaves it (tests/test_hosts_lab.py fetches it for real)
    offered = Host.objects.get(name="h9").offered_fingerprint
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    with pytest.raises(CommandError, match="certificate changed"):
        shell("host-confirm", admin_user.username, "h9", "0" * 64)
    monkeypatch.setattr("sys.stdin", io.StringIO("planted-pw-42\n"))
    trusted = json.loads(shell("--json", "host-confirm", admin_user.username, "h9", offered))
    assert trusted["enrollment"] == Host.Enrollment.TRUSTING
    assert "planted-pw-42" not in repr(list(Host.objects.values()))
    assert json.loads(shell("--json", "host-remove", admin_user.username, "h9")) == {
        "removed": "h9"
    }
    assert not Host.objects.filter(name="h9").exists()


def test_a_viewer_cannot_manage_hosts_from_the_shell(viewer_user):
    make_host("h1")
    with pytest.raises(CommandError, match="Only administrators"):
        shell("host-add", viewer_user.username, "h2", "https://h2.example:8443")
    with pytest.raises(CommandError, match="Only administrators"):
        shell("host-remove", viewer_user.username, "h1")
    assert Host.objects.count() == 1
