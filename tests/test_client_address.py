"""Behind PANEL_TRUSTED_PROXIES proxies, the audit trail and the login throttle see the
client's address, not the proxy's: five wrong passwords lock out that client only."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from panel.accounts.addresses import client_address
from panel.models import AuditEvent

PROXY = "10.0.0.2"


def address(settings, proxies: int, forwarded: str | None, remote: str = PROXY) -> str | None:
    settings.TRUSTED_PROXIES = proxies
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().get("/", **meta))


def test_without_trusted_proxies_the_peer_is_the_client(settings):
    assert address(settings, 0, "203.0.113.9") == PROXY


def test_one_proxy_means_the_last_forwarded_hop(settings):
    assert address(settings, 1, "203.0.113.9") == "203.0.113.9"
    # Whatever the client put in front is ignored: only what the proxy appended counts.
    assert address(settings, 1, "198.51.100.1, 203.0.113.9") == "203.0.113.9"


def test_two_proxies_count_two_hops_from_the_right(settings):
    assert address(settings, 2, "198.51.100.1, 203.0.113.9, 10.0.0.1") == "203.0.113.9"
    assert address(settings, 2, "2001:db8::7, 10.0.0.1") == "2001:db8::7"


@pytest.mark.parametrize("forwarded", [None, "", "not-an-address", "1.2.3.4, "])
def test_a_missing_or_forged_header_falls_back_to_the_peer(settings, forwarded):
    assert address(settings, 1, forwarded) == PROXY


def via_proxy(client_ip: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_ip)


@pytest.mark.django_db
def test_the_audit_trail_names_the_client_behind_the_proxy(settings, admin_user):
    settings.TRUSTED_PROXIES = 1
    via_proxy("203.0.113.9").post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert AuditEvent.objects.get(action="login").address == "203.0.113.9"


@pytest.mark.django_db
def test_five_wrong_passwords_lock_out_that_client_not_everyone(settings, admin_user):
    settings.TRUSTED_PROXIES = 1
    attacker = via_proxy("203.0.113.66")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attacker.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    locked = attacker.post("/accounts/login/", {"username": "ada", "password": "s3cret-pass-word"})
    assert locked.status_code == 429
    admin = via_proxy("203.0.113.10")
    response = admin.post("/accounts/login/", {"username": "ada", "password": "s3cret-pass-word"})
    assert response.status_code == 302, "the admin behind the same proxy still gets in"
    locked_out = AuditEvent.objects.filter(action="login.locked_out")
    assert set(locked_out.values_list("address", flat=True)) == {"203.0.113.66"}
