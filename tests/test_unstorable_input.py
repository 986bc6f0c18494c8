"""Text no database can store (a NUL byte, a lone surrogate) in a form, a query string, a JSON
body or a path: refused with a message, nothing changed, the attempt on the audit trail; and a
host whose LXD reports such text still syncs, saying what it could not keep. The suite runs on
PostgreSQL and on SQLite (bin/test), so each test holds on both."""

from __future__ import annotations

import json

import pytest

from panel import lxd
from panel.accounts.audit import audit
from panel.accounts.tokens import issue_token
from panel.hosts.inventory import record_inventory, sync_instance
from panel.models import AuditEvent, Host, Instance, Snapshot
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def refusal(response) -> str:
    assert response.status_code == 400, response.content[:300]
    return response.content.decode()


def test_a_nul_byte_in_a_form_field_is_refused_and_the_attempt_is_audited(admin_client):
    response = admin_client.post("/hosts/add/", {"name": "h\x00x", "endpoint": "https://h9:8443"})
    assert "form holds a NUL character" in refusal(response)
    assert not Host.objects.exists()
    event = AuditEvent.objects.get(action="host-add")
    assert event.outcome == AuditEvent.Outcome.REFUSED
    assert "name=h\\x00x" in event.detail  # stored escaped, visible


def test_a_nul_byte_in_a_login_is_refused_and_audited(client):
    response = client.post("/accounts/login/", {"username": "ad\x00min", "password": "x"})
    assert "form holds a NUL character" in refusal(response)
    assert AuditEvent.objects.filter(detail__contains="ad\\x00min").exists()


@pytest.mark.parametrize("page", ["/hosts/", "/containers/", "/operations/", "/audit/"])
def test_a_nul_byte_in_a_query_string_is_refused_on_every_list(admin_client, page):
    assert "query string" in refusal(admin_client.get(page, {"q": "a\x00b"}))


@pytest.mark.parametrize("path", ["/hosts/%00/", "/containers/1%00/", "/api/hosts/%00"])
def test_a_nul_byte_in_a_path_is_refused(admin_client, path):
    assert "address (path)" in refusal(admin_client.get(path))


@pytest.mark.parametrize("text", ["start\\u0000", "\\ud800", "ok\\udfff"])
def test_unstorable_json_is_refused_by_the_api_and_audited(client, admin_user, text):
    host = make_host()
    instance = make_instance(host, status="Stopped")
    token = issue_token(admin_user, "t")[1]
    response = client.post(
        f"/api/containers/{instance.pk}/operations/",
        '{"kind": "' + text + '"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert "JSON body" in response.json()["error"]
    assert not instance.operations.exists()
    assert AuditEvent.objects.filter(outcome=AuditEvent.Outcome.REFUSED).exists()


def test_an_escaped_backslash_before_u0000_is_plain_text_and_passes(client, admin_user):
    token = issue_token(admin_user, "t")[1]
    response = client.post(
        "/api/hosts/", json.dumps({"name": "a\\u0000"}), content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert response.status_code != 500 and "NUL" not in response.content.decode()


@pytest.mark.parametrize("path", ["/hosts/%ff%fe/", "/containers/%c3%28/", "/audit/%ff/"])
def test_invalid_utf8_in_a_path_is_a_404_not_an_error(admin_client, path):
    assert admin_client.get(path).status_code == 404


def test_invalid_utf8_in_a_form_is_replaced_not_an_error(admin_client):
    response = admin_client.post(
        "/hosts/add/", b"name=h\xff\xfe&endpoint=https://\xc3\x28",
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert response.status_code == 200 and not Host.objects.exists()


def test_the_audit_trail_stores_any_text_it_is_given():
    event = audit(None, "x\x00y", "ok", "t\x00", "1\x00", "r\ud800", "d\x00" * 3000, "u\x00")
    event.refresh_from_db()
    assert event.action == "x\\x00y" and event.object_repr == "r\\ud800"
    assert event.username == "u\\x00" and len(event.detail) == 4000


def reported(name: str, **fields) -> dict:
    data = {
        "name": name, "type": "container", "status": "Running", "ipv4": "",
        "architecture": "x86_64",
        "description": "", "ephemeral": False, "stateful": False, "created_at": None,
        "last_used_at": None, "profiles": ["default"], "expanded_config": {},
        "expanded_devices": {}, "state": {"pid": 1}, "snapshots": [],
    }  # fmt: skip
    return {**data, **fields}


def test_one_odd_container_never_blocks_a_hosts_sync():
    host = make_host()
    record_inventory(host, [
        reported("plain", snapshots=[{"name": "s1", "created_at": None, "expires_at": None,
                                      "stateful": False}]),
        reported("odd", description="nul \x00 here", architecture="a" * 40,
                 expanded_config={"user.note": "x\x00y", "bad\x00key": "v"},
                 snapshots=[{"name": "s" * 70, "created_at": None, "expires_at": None,
                             "stateful": True},
                            {"name": "fine", "created_at": None, "expires_at": None,
                             "stateful": True}]),
        reported("n" * 70),
    ])  # fmt: skip
    host.refresh_from_db()
    assert host.last_sync is not None
    assert set(host.instances.values_list("name", flat=True)) == {"plain", "odd"}
    odd = Instance.objects.get(name="odd")
    assert odd.description == "nul \\x00 here"
    assert odd.expanded_config == {"user.note": "x\\x00y", "bad\\x00key": "v"}
    assert odd.architecture == "a" * 32
    assert set(Snapshot.objects.values_list("name", flat=True)) == {"s1", "fine"}
    notes = "\n".join(host.inventory_notes)
    assert "odd: its description holds NUL" in notes
    assert "odd: its architecture is cut to 32 characters" in notes
    assert f"snapshot '{'s' * 70}' is not shown" in notes
    assert "is not shown: its name" in notes


def test_the_host_page_says_what_the_sync_could_not_keep(admin_client):
    host = make_host()
    record_inventory(host, [reported("odd", description="\x00")])
    page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "not everything exactly as LXD reported it" in page
    assert "odd: its description holds NUL" in page
    record_inventory(host, [reported("odd")])
    page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "not everything exactly" not in page


def test_an_event_about_an_odd_container_stores_it_as_the_full_sync_does(monkeypatch):
    """The live inventory (manage.py watch_events) reads one container at a time: the same
    screening applies. LXD's answer is faked here (pure logic); tests/test_events_lab.py runs
    the real path."""
    host = make_host()
    odd = reported("odd", description="nul \x00 here", expanded_config={"user.note": "x\x00y"})
    monkeypatch.setattr(lxd, "instance_inventory", lambda target, name: odd)
    instance = sync_instance(host, "odd")
    assert instance is not None and instance.description == "nul \\x00 here"
    assert Instance.objects.get(pk=instance.pk).expanded_config == {"user.note": "x\\x00y"}
    monkeypatch.setattr(lxd, "instance_inventory", lambda target, name: reported("n" * 70))
    assert sync_instance(host, "n" * 70) is None and not Instance.objects.filter(name="n" * 70)
