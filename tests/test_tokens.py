"""API tokens (panel/accounts/tokens.py): read-only scope, expiry, revocation when the user's
password changes or the user is deactivated, inert names, last use; through the web client,
the JSON API and `manage.py api_token`."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from panel.accounts.tokens import issue_token
from panel.failures.grouping import group_failure
from panel.models import ApiToken, AuditEvent, Bundle, FailureGroup, Host, Operation
from tests.helpers import make_host, make_instance
from tests.test_failures_grouping import failed

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def stop_request(client, instance, token: str):
    return client.post(f"/api/containers/{instance.pk}/operations/", json.dumps({"kind": "stop"}),
                       content_type="application/json", headers=bearer(token))  # fmt: skip


def test_a_read_only_token_reads_but_cannot_act_and_the_refusal_is_audited(client, operator_user):
    instance = make_instance(make_host())
    _, token = issue_token(operator_user, "dashboard", ApiToken.Scope.READ)
    assert client.get(f"/api/containers/{instance.pk}/", headers=bearer(token)).status_code == 200
    refused = stop_request(client, instance, token)
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert not Operation.objects.exists()
    event = AuditEvent.objects.get(outcome="forbidden")
    assert event.username == "otto" and event.action == "api-container-operation"


def test_a_read_and_act_token_acts_as_its_role_allows(client, operator_user, viewer_user):
    instance = make_instance(make_host())
    _, operator_token = issue_token(operator_user, "ci", ApiToken.Scope.WRITE)
    _, viewer_token = issue_token(viewer_user, "ci", ApiToken.Scope.WRITE)
    assert stop_request(client, instance, viewer_token).status_code == 403  # the role decides
    assert stop_request(client, instance, operator_token).status_code == 201


def test_an_expired_token_is_refused_and_listed_as_expired(client, viewer_client, viewer_user):
    soon = timezone.now() + dt.timedelta(hours=1)
    row, token = issue_token(viewer_user, "short", expires_at=soon)
    assert client.get("/api/hosts/", headers=bearer(token)).status_code == 200
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert client.get("/api/hosts/", headers=bearer(token)).status_code == 401
    assert "expired " in viewer_client.get("/tokens/").content.decode()


def test_changing_the_password_in_the_web_revokes_every_token(client, viewer_client, viewer_user):
    row, token = issue_token(viewer_user, "laptop")
    response = viewer_client.post(
        "/accounts/password_change/",
        {"old_password": "s3cret-pass-word", "new_password1": "an0ther-Long-pass",
         "new_password2": "an0ther-Long-pass"},
    )  # fmt: skip
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None and row.revoked_reason == "password changed"
    assert client.get("/api/hosts/", headers=bearer(token)).status_code == 401
    assert "revoked" in viewer_client.get("/tokens/").content.decode()


def test_a_password_changed_without_signals_still_ends_the_token(client, viewer_user):
    row, token = issue_token(viewer_user, "laptop")
    viewer_user.set_password("changed-by-a-bulk-update")
    User.objects.filter(pk=viewer_user.pk).update(password=viewer_user.password)
    assert client.get("/api/hosts/", headers=bearer(token)).status_code == 401
    row.refresh_from_db()
    assert row.revoked_reason == "password changed"


def test_deactivating_the_user_revokes_for_good_and_a_login_revokes_nothing(client, viewer_user):
    row, token = issue_token(viewer_user, "laptop")
    login = client.post("/accounts/login/", {"username": "vic", "password": "s3cret-pass-word"})
    assert login.status_code == 302  # a login saves last_login, and nothing else
    row.refresh_from_db()
    assert row.revoked_at is None
    viewer_user.is_active = False
    viewer_user.save()
    viewer_user.is_active = True
    viewer_user.save()
    row.refresh_from_db()
    assert row.revoked_reason == "user deactivated"
    assert client.get("/api/hosts/", headers=bearer(token)).status_code == 401


def test_the_last_use_is_recorded_with_its_address_and_listed(client, viewer_client, viewer_user):
    row, token = issue_token(viewer_user, "laptop")
    client.get("/api/hosts/", headers=bearer(token), REMOTE_ADDR="10.1.2.3")
    row.refresh_from_db()
    assert row.last_used_at is not None and row.last_used_from == "10.1.2.3"
    assert "from 10.1.2.3" in viewer_client.get("/tokens/").content.decode()


def test_behind_a_trusted_proxy_the_last_use_names_the_client_not_the_proxy(
    client, viewer_user, settings
):
    settings.TRUSTED_PROXIES = 1
    row, token = issue_token(viewer_user, "laptop")
    client.get("/api/hosts/", headers=bearer(token), REMOTE_ADDR="10.0.0.1",
               HTTP_X_FORWARDED_FOR="192.0.2.7")  # fmt: skip
    row.refresh_from_db()
    assert row.last_used_from == "192.0.2.7"


def test_an_administrators_read_only_token_acts_on_no_endpoint_the_schema_lists(client, admin_user):
    """Every method but GET in /api/schema/ (enrolment, failure groups, operations,
    bundles, hosts' removal included) answers 403 to a read-only token and changes nothing."""
    host = make_host("host1", facts={"server": "lxd", "server_version": "5.0.2"})
    group = group_failure(failed("dump-host1", host).pk).group
    _, token = issue_token(admin_user, "dashboard", ApiToken.Scope.READ)
    paths = client.get("/api/schema/").json()["paths"]
    asked = [
        (method, path.replace("{pk}", str(host.pk if "/hosts/" in path else group.pk)))
        for path, methods in paths.items()
        for method in methods
        if method in ("post", "put", "patch", "delete")
    ]
    assert ("post", "/api/hosts/enroll/") in asked
    assert ("post", f"/api/failures/{group.pk}/note/") in asked
    before = (Operation.objects.count(), Bundle.objects.count(), Host.objects.count())
    for method, path in asked:
        body = json.dumps({"name": "h9", "endpoint": "https://10.9.9.9:8443", "note": "x",
                           "status": "ignored", "kind": "stop"})  # fmt: skip
        answer = getattr(client, method)(path, body, content_type="application/json",
                                         headers=bearer(token))  # fmt: skip
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert "read-only" in answer.json()["error"]
    assert (Operation.objects.count(), Bundle.objects.count(), Host.objects.count()) == before
    group.refresh_from_db()
    assert group.note == "" and group.status == FailureGroup.Status.NEW
    assert AuditEvent.objects.filter(outcome="forbidden").count() == len(asked)


BIDI_NAMES = ["backup\u202egpj.exe", "ci\u2066x\u2069", "zero\u200bwidth", "rtl\u200fmark",
              "nul\x07bell"]  # fmt: skip


@pytest.mark.parametrize("name", BIDI_NAMES)
def test_token_names_with_invisible_or_bidirectional_characters_are_refused(
    viewer_client, viewer_user, name
):
    response = viewer_client.post("/tokens/", {"name": name})
    assert response.status_code == 400 and b"Use visible characters only" in response.content
    with pytest.raises(ValidationError):
        issue_token(viewer_user, name)
    with pytest.raises(CommandError, match="visible characters"):
        call_command("api_token", "create", "vic", name)
    assert not ApiToken.objects.exists()


def test_the_web_form_makes_read_only_90_day_tokens_unless_asked(viewer_client):
    viewer_client.post("/tokens/", {"name": "default"})
    viewer_client.post("/tokens/", {"name": "ci", "scope": "write", "expires_in": "never"})
    default, ci = ApiToken.objects.order_by("pk")
    assert default.scope == "read"
    assert 89 <= (default.expires_at - timezone.now()).days <= 90
    assert ci.scope == "write" and ci.expires_at is None


def test_the_command_makes_read_only_expiring_tokens_and_lists_their_state(viewer_user):
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", "create", "vic", "grafana", "--read-only", "--expires-in", "7",
                 stdout=out, stderr=err)  # fmt: skip
    row = ApiToken.objects.get()
    assert out.getvalue().strip().startswith(row.prefix)
    assert row.scope == "read" and 6 <= (row.expires_at - timezone.now()).days <= 7
    with pytest.raises(CommandError, match="1 to 3650"):
        call_command("api_token", "create", "vic", "x", "--expires-in", "0")
    call_command("api_token", "revoke", row.prefix, stdout=io.StringIO())
    listing = io.StringIO()
    call_command("api_token", "list", stdout=listing)
    assert "\tread\t" in listing.getvalue() and "(by an administrator (api_token))" in (
        listing.getvalue()
    )
