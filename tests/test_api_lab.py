"""Hosts enrolled for real through the API and the shell command: fetch the certificate,
compare the fingerprint with the lab host's own, trust it once, see its containers."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from panel.accounts.tokens import issue_token
from panel.models import Host
from tests.conftest import wait_for
from tests.lab_tools import server_fingerprint

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_an_admin_enrolls_a_lab_host_through_the_api(
    lab, celery_worker, admin_user, untrusted_panel
):
    lab_host = lab["hosts"][0]
    api = Client(headers={"Authorization": f"Bearer {issue_token(admin_user, 'lab')[1]}"})
    added = api.post("/api/hosts/enroll/", {"name": lab_host["name"], "endpoint": lab_host["url"]},
                     content_type="application/json")  # fmt: skip
    assert added.status_code == 201, added.json()
    url = added["Location"]

    def offered() -> str:
        return api.get(url).json()["offered_fingerprint"]

    fingerprint = wait_for(offered, timeout=30, what="the certificate to be fetched")
    assert fingerprint == server_fingerprint(lab_host)  # what `lxc info` shows on the host
    host = api.get(url).json()
    confirmed = api.post(f"/api/hosts/{host['id']}/enroll/confirm/",
                         {"fingerprint": fingerprint, "secret": lab_host["trust_password"]},
                         content_type="application/json")  # fmt: skip
    assert confirmed.status_code == 202, confirmed.json()
    online = wait_for(lambda: api.get(url).json()["status"] == "online", timeout=60,
                      what="the host to be trusted and synced")  # fmt: skip
    assert online and api.get(url).json()["fingerprint"] == fingerprint
    containers = api.get("/api/containers/", {"host": lab_host["name"]}).json()
    assert containers["count"] >= 0 and "results" in containers
    assert api.delete(url).status_code == 204


def test_an_admin_enrolls_a_lab_host_from_the_shell_with_json(
    lab, celery_worker, admin_user, untrusted_panel, monkeypatch
):
    lab_host = lab["hosts"][1]

    def shell(*args: str) -> dict:
        out = io.StringIO()
        call_command("panel", "--json", *args, stdout=out, stderr=io.StringIO())
        return json.loads(out.getvalue())

    added = shell("host-add", admin_user.username, lab_host["name"], lab_host["url"], "--wait",
                  "--timeout", "30")  # fmt: skip
    assert added["enrollment"] == Host.Enrollment.AWAITING_CONFIRMATION
    assert added["offered_fingerprint"] == server_fingerprint(lab_host)
    monkeypatch.setattr("sys.stdin", io.StringIO(lab_host["trust_password"] + "\n"))
    shell("host-confirm", admin_user.username, lab_host["name"], added["offered_fingerprint"],
          "--wait", "--timeout", "60")  # fmt: skip
    host = Host.objects.get(name=lab_host["name"])
    wait_for(lambda: Host.objects.get(pk=host.pk).status == Host.Status.ONLINE, timeout=30,
             what="the first sync")  # fmt: skip
    assert shell("host-remove", admin_user.username, lab_host["name"]) == {
        "removed": lab_host["name"]
    }
