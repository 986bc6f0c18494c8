"""The first pages: login, the dashboard of hosts, the health check, the admin."""

from __future__ import annotations

import pytest

from panel.models import AuditEvent, Host

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_it_logs_in_with_the_real_form_and_shows_the_dashboard(client, admin_user):
    page = client.get("/accounts/login/")
    assert b'name="csrfmiddlewaretoken"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "ada", "password": "s3cret-pass-word"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert b"Hosts" in response.content


def test_it_refuses_a_wrong_password_with_a_clear_message(client, admin_user):
    response = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


def test_the_empty_dashboard_explains_how_to_get_a_host(admin_client, settings):
    settings.LOCAL_LXD_SOCKETS = []
    response = admin_client.get("/")
    assert b"No hosts yet" in response.content
    assert b"python3 lab/lab.py up" in response.content


def test_the_dashboard_lists_hosts_and_renders_their_text_inert(viewer_client):
    Host.objects.create(
        name="h1", endpoint="https://10.0.0.1:8443", last_error="<script>alert(1)</script>"
    )
    response = viewer_client.get("/")
    assert b"h1" in response.content
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_the_host_table_polls_fast_only_while_a_host_has_not_answered(viewer_client):
    host = Host.objects.create(name="h1", endpoint="/nonexistent.socket")
    assert b'hx-trigger="every 2s"' in viewer_client.get("/").content
    host.record_failure("gone")
    assert b'hx-trigger="every 15s"' in viewer_client.get("/").content


def test_an_htmx_request_gets_only_the_host_table(viewer_client):
    Host.objects.create(name="h1", endpoint="/nonexistent.socket")
    response = viewer_client.get("/", headers={"HX-Request": "true"})
    assert response.content.lstrip().startswith(b'<div id="host-table"')
    assert b"<html" not in response.content


def test_the_health_check_needs_no_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok"}


def test_the_admin_is_for_staff_only(viewer_client, admin_client):
    assert viewer_client.get("/admin/").status_code == 302
    assert admin_client.get("/admin/panel/host/").status_code == 200


def test_only_admins_can_add_the_local_host(viewer_client):
    response = viewer_client.post("/hosts/add-local/")
    assert response.status_code == 403
    assert not Host.objects.exists()


def test_the_health_report_needs_login_and_names_each_failing_part(client, viewer_client):
    assert client.get("/health/").status_code == 302
    Host.objects.create(
        name="h1",
        endpoint="/x.socket",
        status=Host.Status.UNREACHABLE,
        last_error="No LXD socket at /x.socket",
    )
    report = viewer_client.get("/health/")
    checks = {check["subject"]: check for check in report.json()["checks"]}
    assert report.status_code == 503
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert not checks["host h1"]["ok"] and "No LXD socket" in checks["host h1"]["fix"]
    assert not checks["agent on h1"]["ok"] and "docs/agent.md" in checks["agent on h1"]["fix"]


def test_login_is_throttled_after_repeated_failures_and_audited(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/accounts/login/", {"username": "ada", "password": "guess"})
    locked = client.post("/accounts/login/", {"username": "ada", "password": "s3cret-pass-word"})
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session
    events = list(AuditEvent.objects.values_list("action", "outcome", "username"))
    assert events.count(("login", "refused", "ada")) == 4  # the right password, too late, too
    assert ("login.locked_out", "forbidden", "ada") in events


def test_every_action_and_every_refusal_is_on_the_audit_trail(admin_client, viewer_client):
    host = Host.objects.create(name="h1", endpoint="/x.socket")
    viewer_client.post(f"/hosts/{host.pk}/remove/")
    admin_client.post(
        "/hosts/add/",
        {"name": "h2", "endpoint": "/y.socket", "password": "not-a-field-but-never-logged"},
    )
    events = {(e.action, e.outcome, e.username): e for e in AuditEvent.objects.all()}
    forbidden = events[("host-remove", "forbidden", "vic")]
    assert (forbidden.object_type, forbidden.object_repr) == ("host", "h1")
    assert forbidden.address == "127.0.0.1"
    added = events[("host-add", "ok", "ada")]
    assert "name=h2" in added.detail and "never-logged" not in added.detail
    assert Host.objects.filter(name="h1").exists()  # the refused removal changed nothing


def test_the_audit_trail_is_for_admins_and_exports_csv_safely(admin_client, viewer_client):
    AuditEvent.objects.create(username="=cmd|' /C calc'!A0", action="login", outcome="refused")
    assert viewer_client.get("/audit/").status_code == 403
    page = admin_client.get("/audit/?outcome=refused")
    assert b"login" in page.content
    export = admin_client.get("/audit/export.csv?outcome=refused")
    text = b"".join(export.streaming_content).decode()
    assert text.splitlines()[0].startswith("at,username,action")
    assert "'=cmd" in text  # a formula is turned into text for spreadsheets
