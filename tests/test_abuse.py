"""Bad input and abuse (issue 7, item 8): markup in every string rendered inert, over-long and
non-UTF-8 input refused, path traversal, other objects' ids, no login, viewers posting.
Each case asserts the refusal and that nothing changed. Database only."""

from __future__ import annotations

import inspect
import json
import re

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.urls import URLPattern, reverse

from panel import urls
from panel.accounts.tokens import issue_token
from panel.failures.grouping import group_failure
from panel.models import (
    ApiToken,
    AuditEvent,
    Bundle,
    FailureGroup,
    Host,
    InstanceLog,
    MaintenancePlan,
    Operation,
    Snapshot,
    SnapshotSchedule,
)
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = pytest.mark.django_db

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'
RAW = ("<script>alert(1)", "<img src=x")
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
LONG = "x" * 10_000


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def api_post(client, path: str, token: str, body) -> object:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data, content_type="application/json", headers=bearer(token))


def row_counts() -> dict[str, int]:
    """Every panel model's row count, and the users', except the audit trail (which must
    grow: a refused attempt is recorded)."""
    models = [m for m in apps.get_app_config("panel").get_models() if m is not AuditEvent]
    counts = {m.__name__: m.objects.count() for m in models}
    counts["User"] = apps.get_model("auth", "User").objects.count()
    return counts


def assert_inert(content: bytes, expect_escaped: bool = True) -> None:
    page = content.decode()
    for raw in RAW:
        assert raw not in page
    if expect_escaped:
        assert ESCAPED in page


@pytest.fixture
def world(admin_user, operator_user):
    """Every kind of object, each carrying markup in every string LXD or a user supplies."""
    host = make_host(
        "h1",
        last_error=XSS,
        facts={
            "server": "lxd",
            "server_version": "5.0.2",
            "driver": "lxc",
            "cpu_model": XSS,
            "os": XSS,
            "profiles": [XSS],
            "networks": [XSS],
            "storage_pools": [XSS],
        },
    )
    other_host = make_host("h2", status=Host.Status.UNREACHABLE, last_error=XSS)
    instance = make_instance(
        host,
        "c1",
        description=XSS,
        expanded_config={"user.note": XSS},
        expanded_devices={XSS: {"type": "disk", "path": XSS}},
    )
    other = make_instance(other_host, "c2", status="Stopped")
    make_snapshot(instance, "snap0")
    make_snapshot(other, "only-on-c2")
    log = InstanceLog.objects.create(instance=instance, filename=XSS, content=XSS)
    other_log = InstanceLog.objects.create(instance=other, filename="lxc.log", content="c2 log")
    operation = Operation.objects.create(
        kind="stateful_snapshot",
        instance=instance,
        instance_name=instance.name,
        source_host=host,
        status="failed",
        stage=XSS[:60],
        progress_text=XSS,
        error=XSS,
        outcome=XSS,
        container_state_after=XSS,
        requested_by=operator_user,
        result={"checks": [{"label": XSS, "status": "fail", "detail": XSS, "blocks": []}]},
    )
    operation.log(XSS, stage="dump")
    other_operation = Operation.objects.create(
        kind="stop",
        instance=other,
        instance_name=other.name,
        source_host=other_host,
        status="pending",
    )
    bundle = Bundle.objects.create(
        operation=operation,
        instance=instance,
        instance_name=instance.name,
        status=Bundle.Status.READY,
        report=XSS,
        error=XSS,
        manifest={
            "items": [
                {
                    "name": XSS,
                    "host": XSS,
                    "source": XSS,
                    "status": "missing",
                    "reason": XSS,
                    "bytes": 0,
                }
            ],
            "summary": {},
        },
    )
    bundle.file.save("abuse.tar.gz", ContentFile(b"tarball"))
    other_bundle = Bundle.objects.create(
        operation=other_operation, instance=other, instance_name="c2"
    )
    token, _ = issue_token(admin_user, XSS[:100])
    failure_group = group_failure(operation.pk).group
    FailureGroup.objects.filter(pk=failure_group.pk).update(
        note=XSS, note_by_name=XSS, upstream_url=f"https://bugs.example/{XSS}", status_reason=XSS
    )
    item = {"name": "c1", "instance": instance.pk, "at": "h1", "status": XSS[:30],
            "home": "h1", "action": "migrate", "fate": XSS, "target": "h2", "strategy": "cold",
            "strategy_reason": XSS, "expected_downtime": 1.0, "expected_basis": XSS,
            "problems": [XSS], "warnings": [XSS], "candidates": {"h2": XSS},
            "checks": []}  # fmt: skip
    plan = MaintenancePlan.objects.create(host=host, mode="evacuate", items=[item], summary=XSS)
    return {
        "host": host,
        "other_host": other_host,
        "instance": instance,
        "other": other,
        "log": log,
        "other_log": other_log,
        "operation": operation,
        "other_operation": other_operation,
        "bundle": bundle,
        "other_bundle": other_bundle,
        "token": token,
        "failure_group": failure_group,
        "plan": plan,
    }


# (a) HTML and script rendered inert


def test_lxd_supplied_strings_are_inert_on_every_page_that_shows_them(admin_client, world):
    pages = [
        "/",
        "/hosts/",
        f"/hosts/{world['host'].pk}/",
        f"/containers/{world['instance'].pk}/",
        f"/containers/{world['instance'].pk}/logs/{world['log'].pk}/",
        "/operations/",
        f"/operations/{world['operation'].pk}/",
        f"/operations/{world['operation'].pk}/progress/",
        f"/bundles/{world['bundle'].pk}/",
        "/tokens/",
        "/failures/",
        f"/failures/{world['failure_group'].pk}/",
        f"/maintenance/{world['plan'].pk}/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert_inert(response.content)


def test_lxd_supplied_strings_are_inert_in_the_audit_trail_and_lists(admin_client, world):
    admin_client.post(f"/containers/{world['instance'].pk}/operations/", {"kind": XSS})
    for page in ("/audit/", "/bundles/", "/containers/"):
        response = admin_client.get(page)
        assert response.status_code == 200
        assert_inert(response.content, expect_escaped=page == "/audit/")


def test_the_api_answers_json_that_a_browser_will_not_sniff_as_html(client, world, admin_user):
    token = issue_token(admin_user, "t")[1]
    response = client.get(f"/api/containers/{world['instance'].pk}/", headers=bearer(token))
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["description"] == XSS


@pytest.mark.parametrize(
    "page",
    [
        "/containers/?q={x}&host={x}&state={x}&page={x}",
        "/operations/?host={x}&container={x}&kind={x}&status={x}&user={x}&page={x}",
        "/bundles/?page={x}",
        "/failures/?status={x}&host={x}&kind={x}&page={x}",
        "/audit/?user={x}&action={x}&outcome={x}&object={x}&since={x}&until={x}",
    ],
)
def test_markup_in_every_list_filter_is_inert(admin_client, page):
    response = admin_client.get(page.format(x="%3Cscript%3Ealert(1)%3C/script%3E"))
    assert response.status_code == 200
    assert_inert(response.content, expect_escaped=False)


@pytest.mark.parametrize(
    ("path", "fields", "refusal"),
    [
        ("/hosts/add/", {"name": XSS, "endpoint": "https://h9:8443"}, "Use 1 to 63 letters"),
        ("/containers/{c}/operations/", {"kind": "snapshot", "snapshot": XSS}, "Use 1 to 63"),
        ("/containers/{c}/schedule/", {"every_minutes": XSS, "keep": "3"}, "whole number"),
        (
            "/containers/{c}/migrate/check/",
            {"target": "{h2}", "new_name": XSS, "strategy": "auto"},
            "Use 1 to 63 letters",
        ),
    ],
)
def test_user_supplied_markup_is_refused_and_shown_inert(
    admin_client, world, path, fields, refusal
):
    before = row_counts()
    ids = {"c": world["instance"].pk, "h2": make_host("h3").pk}
    before["Host"] += 1
    fields = {
        key: value.format(**ids) if "{" in value and "<" not in value else value
        for key, value in fields.items()
    }
    response = admin_client.post(path.format(**ids), fields, follow=True)
    assert response.status_code == 200
    assert refusal in response.content.decode()
    assert_inert(response.content, expect_escaped=False)
    assert row_counts() == before


def test_a_token_name_with_markup_is_kept_as_text_and_rendered_inert(viewer_client):
    response = viewer_client.post("/tokens/", {"name": XSS})
    assert ApiToken.objects.get().name == XSS
    assert_inert(response.content)
    assert_inert(viewer_client.get("/tokens/").content)


# (b) Over-long input


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/hosts/add/", {"name": LONG, "endpoint": "https://h9:8443"}),
        ("/hosts/add/", {"name": "h9", "endpoint": "https://" + LONG}),
        ("/containers/{c}/operations/", {"kind": "snapshot", "snapshot": LONG}),
        ("/containers/{c}/operations/", {"kind": LONG}),
        ("/containers/{c}/schedule/", {"every_minutes": "9" * 10_000, "keep": "3"}),
        (
            "/containers/{c}/migrate/check/",
            {"target": "{h3}", "new_name": LONG, "strategy": "auto"},
        ),
        ("/containers/{c}/migrate/", {"target": "{h3}", "pool": LONG, "strategy": "auto"}),
        ("/tokens/", {"name": LONG}),
    ],
)
def test_over_long_form_input_is_refused_with_a_message(admin_client, world, path, fields):
    before = row_counts()
    ids = {"c": world["instance"].pk, "h3": make_host("h3").pk}
    before["Host"] += 1
    fields = {
        key: value.format(**ids) if value == "{h3}" else value for key, value in fields.items()
    }
    response = admin_client.post(path.format(**ids), fields, follow=True)
    assert response.status_code in (200, 400)
    page = response.content.decode()
    refusals = r"at most \d+ characters|whole number|not one of the available"
    assert re.search(refusals, page)
    assert row_counts() == before


@pytest.mark.parametrize(
    "body",
    [{"kind": "snapshot", "snapshot": LONG}, {"kind": LONG}, {"kind": "stop", LONG: "x"}],
)
def test_over_long_api_input_is_refused(client, world, admin_user, body):
    token = issue_token(admin_user, "t")[1]
    before = row_counts()
    response = api_post(client, f"/api/containers/{world['other'].pk}/operations/", token, body)
    assert response.status_code == 400
    assert row_counts() == before


def test_over_long_filters_are_cut_on_the_web_and_refused_by_the_api(client, admin_client):
    assert admin_client.get(f"/containers/?q={LONG}").status_code == 200
    assert admin_client.get(f"/operations/?host={LONG}").status_code == 200
    assert admin_client.get(f"/audit/?object={LONG}").status_code == 200
    token = issue_token(apps.get_model("auth", "User").objects.get(username="ada"), "t")[1]
    response = client.get(f"/api/containers/?q={LONG}", headers=bearer(token))
    assert response.status_code == 400
    assert "at most 63 characters" in response.json()["errors"]["q"][0]


def test_an_over_long_bearer_token_is_a_401_not_an_error(client):
    response = client.get("/api/hosts/", headers=bearer("lxdp_" + LONG))
    assert response.status_code == 401


# (c) Input that is not valid UTF-8


def test_non_utf8_form_bodies_are_refused_and_change_nothing(admin_client, world):
    before = row_counts()
    for path in (f"/containers/{world['instance'].pk}/operations/", "/hosts/add/", "/tokens/"):
        response = admin_client.post(
            path,
            b"kind=snap\xff\xfe&snapshot=a\xc3\x28&name=\xff\xfe&endpoint=https://\xff",
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code in (200, 302, 400), path
    assert row_counts() == before


def test_non_utf8_query_strings_do_not_break_any_list(admin_client, client, admin_user):
    token = issue_token(admin_user, "t")[1]
    before = row_counts()
    for page in ("/containers/", "/operations/", "/bundles/", "/audit/", "/hosts/"):
        response = admin_client.get(page, QUERY_STRING="q=\xff\xfe&host=%ff%c3%28&page=%ff")
        assert response.status_code == 200, page
    for page in ("/api/containers/", "/api/operations/", "/api/bundles/"):
        response = client.get(page, QUERY_STRING="q=%ff%fe&host=\xff", headers=bearer(token))
        assert response.status_code in (200, 400), page
    assert row_counts() == before


def test_non_utf8_json_and_headers_are_refused(client, world, admin_user):
    token = issue_token(admin_user, "t")[1]
    before = row_counts()
    path = f"/api/containers/{world['other'].pk}/operations/"
    assert api_post(client, path, token, b'{"kind": "start\xff"}').status_code == 400
    assert api_post(client, path, token, b"\xfe\xff\x00{").status_code == 400
    response = client.get("/api/hosts/", headers={"Authorization": "Bearer lxdp_\xff\xfe"})
    assert response.status_code == 401
    assert row_counts() == before


def test_a_null_byte_in_a_name_is_refused(admin_client, world):
    before = row_counts()
    admin_client.post("/hosts/add/", {"name": "h\x00x", "endpoint": "https://h9:8443"})
    admin_client.post(
        f"/containers/{world['instance'].pk}/operations/",
        {"kind": "snapshot", "snapshot": "a\x00b"},
    )
    assert row_counts() == before


# (d) Path traversal in downloads


@pytest.mark.parametrize(
    "path",
    [
        "/bundles/../../etc/passwd/download/",
        "/bundles/%2e%2e%2f%2e%2e%2fetc%2fpasswd/download/",
        "/bundles/%2e%2e/download/",
        "/bundles//etc/passwd/download/",
        "/bundles/1/download/../../../../etc/passwd",
        "/bundles/-1/download/",
        "/containers/1/logs/..%2f..%2fetc%2fpasswd/",
        "/containers/1/logs/%2fetc%2fpasswd/",
        "/api/bundles/..%2f..%2fetc%2fpasswd/download/",
        "/api/bundles/%2fetc%2fpasswd/download/",
        "/files-are-not-served-directly/bundles/abuse.tar.gz",
    ],
)
def test_path_traversal_in_download_urls_is_404(admin_client, admin_user, world, path):
    token = issue_token(admin_user, "t")[1]
    response = admin_client.get(path, headers=bearer(token))
    assert response.status_code == 404
    assert b"root:" not in b"".join(getattr(response, "streaming_content", [response.content]))


@pytest.mark.parametrize("stored", ["../../../../etc/passwd", "/etc/passwd", "bundles/../../x"])
def test_a_bundle_row_naming_a_file_outside_media_root_is_not_served(admin_client, world, stored):
    Bundle.objects.filter(pk=world["bundle"].pk).update(file=stored)
    response = admin_client.get(f"/bundles/{world['bundle'].pk}/download/")
    assert response.status_code in (400, 404)
    assert b"root:" not in b"".join(getattr(response, "streaming_content", [response.content]))


# (e) Ids of other objects


def test_a_log_id_of_another_container_is_404(admin_client, world):
    response = admin_client.get(f"/containers/{world['instance'].pk}/logs/{world['other_log'].pk}/")
    assert response.status_code == 404


def test_a_snapshot_of_another_container_cannot_be_restored_or_deleted(
    admin_client, client, admin_user, world
):
    token = issue_token(admin_user, "t")[1]
    before = row_counts()
    path = f"/containers/{world['instance'].pk}/operations/"
    for kind in ("restore", "delete_snapshot"):
        page = admin_client.post(path, {"kind": kind, "snapshot": "only-on-c2"}, follow=True)
        assert "no snapshot named" in page.content.decode()
        response = api_post(client, "/api" + path, token, {"kind": kind, "snapshot": "only-on-c2"})
        assert response.status_code == 400
    assert row_counts() == before
    assert Snapshot.objects.filter(name="only-on-c2", instance=world["other"]).exists()


def test_an_operation_id_in_a_container_url_is_404_and_changes_nothing(admin_client, world):
    missing = max(world["operation"].pk, world["other_operation"].pk) + 1000
    Operation.objects.filter(pk=world["other_operation"].pk)
    before = row_counts()
    for path in (
        f"/containers/{missing}/operations/",
        f"/containers/{missing}/bundle/",
        f"/operations/{missing}/cancel/",
        f"/bundles/{missing}/download/",
    ):
        assert admin_client.post(path, {"kind": "stop"}).status_code in (404, 405), path
    assert row_counts() == before


def test_an_operation_page_lists_only_its_own_bundles(admin_client, world):
    page = admin_client.get(f"/operations/{world['operation'].pk}/").content.decode()
    assert f"/bundles/{world['bundle'].pk}/" in page
    assert f"/bundles/{world['other_bundle'].pk}/" not in page


def test_roles_draw_boundaries_that_ids_cannot_cross(viewer_client, world, client, viewer_user):
    before = row_counts()
    assert viewer_client.get(f"/bundles/{world['bundle'].pk}/download/").status_code == 403
    assert viewer_client.post(f"/tokens/{world['token'].pk}/revoke/").status_code == 404
    assert viewer_client.get("/audit/").status_code == 403
    assert viewer_client.get(f"/hosts/{world['host'].pk}/enroll/").status_code == 403
    token = issue_token(viewer_user, "t")[1]
    before["ApiToken"] += 1
    download = client.get(f"/api/bundles/{world['bundle'].pk}/download/", headers=bearer(token))
    assert download.status_code == 403
    assert row_counts() == before
    world["token"].refresh_from_db()
    assert world["token"].revoked_at is None


# (f) Unauthenticated requests, (g) viewers posting: every URL pattern, derived from urls.py


# Routes anyone may read, and why.
PUBLIC = {
    "health": "the load balancer's liveness check",
    "api-not-found": "answers 401 (or 404 with a token) for any unknown API path",
    "api-index": "lists the API's endpoints, as the schema does",
    "api-schema": "the OpenAPI document: what the API accepts, no data",
    "api-docs": "the same document as a page",
    "metrics": "for Prometheus: by network or token, not by login (tests/test_metrics_and_logs.py)",
}


def panel_patterns() -> list[URLPattern]:
    """Every route of the panel itself (Django's admin and auth views are Django's)."""
    return [p for p in urls.urlpatterns if isinstance(p, URLPattern) and p.name not in PUBLIC]


def sample_path(pattern: URLPattern, world: dict) -> str:
    """The pattern's URL with the ids of real objects of the kind it takes."""
    route = str(pattern.pattern).removeprefix("api/")
    kinds = [
        ("hosts", "host"),
        ("containers", "instance"),
        ("operations", "operation"),
        ("bundles", "bundle"),
        ("tokens", "token"),
        ("failures", "failure_group"),
        ("maintenance", "plan"),
    ]
    kwargs = {}
    if "<int:pk>" in route:
        kind = next(key for prefix, key in kinds if route.startswith(prefix))
        kwargs["pk"] = world[kind].pk
    if "<int:log_pk>" in route:
        kwargs["log_pk"] = world["log"].pk
    return reverse(pattern.name, kwargs=kwargs)


def accepted_methods(view) -> set[str] | None:
    """The methods a view's require_http_methods (or panel.web.api.base.allow) lets through, read
    from the decorators' closures; None when no decorator limits them (any method)."""
    while view is not None:
        closure = inspect.getclosurevars(view).nonlocals
        for name in ("request_method_list", "methods"):
            if name in closure:
                return set(closure[name])
        view = getattr(view, "__wrapped__", None)
    return None


def accepts_post(pattern: URLPattern) -> bool:
    methods = accepted_methods(pattern.callback)
    return methods is None or "POST" in methods


# POST endpoints a viewer may use, and why; every other one must refuse a viewer.
VIEWER_MAY_POST = {
    "token-list": "makes the viewer's own token, which acts with the viewer's role",
    "token-revoke": "revokes only the viewer's own tokens (another's is a 404)",
    "notifications": "saves the viewer's own notification choices",
    "notification-secret": "renews only the viewer's own webhook secret",
}


def test_every_page_needs_a_login_and_the_api_answers_401(client, world):
    patterns = panel_patterns()
    assert len(patterns) > 40
    for pattern in patterns:
        path = sample_path(pattern, world)
        response = client.get(path)
        if pattern.name.startswith("api-"):
            assert response.status_code == 401, path
            assert "error" in response.json()
        else:
            assert response.status_code == 302, path
            assert response["Location"].startswith("/accounts/login/?next="), path
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/anything/").status_code == 401
    for public in ("/api/", "/api/schema/"):
        response = client.get(public)
        assert response.status_code == 200  # and says nothing of the panel's objects:
        assert world["host"].name not in response.content.decode()


def test_unauthenticated_posts_are_redirected_or_401_and_change_nothing(client, world):
    before = row_counts()
    for pattern in filter(accepts_post, panel_patterns()):
        response = client.post(sample_path(pattern, world), {"kind": "stop", "name": "x"})
        assert response.status_code in ((401,) if pattern.name.startswith("api-") else (302,))
    assert row_counts() == before


def test_the_post_endpoints_under_test_are_every_one_in_urls_py(world):
    """A new POST endpoint fails here until it is classified: refused to viewers, or listed
    in VIEWER_MAY_POST with the reason."""
    posting = {p.name for p in panel_patterns() if accepts_post(p)}
    assert {
        "instance-operation",
        "migration-start",
        "host-remove",
        "operation-cancel",
        "api-container-operation",
        "api-operation-cancel",
        "token-revoke",
    } <= posting
    assert set(VIEWER_MAY_POST) <= posting
    get_only = {p.name for p in panel_patterns() if not accepts_post(p)}
    assert {"instance-list", "bundle-download", "api-hosts", "api-bundle-download"} <= get_only


def test_a_viewer_posting_anywhere_is_refused_and_nothing_changes(
    client, viewer_client, viewer_user, world
):
    token = issue_token(viewer_user, "t")[1]
    before = row_counts()
    tried = []
    for pattern in panel_patterns():
        if not accepts_post(pattern) or pattern.name in VIEWER_MAY_POST:
            continue
        path = sample_path(pattern, world)
        fields = {
            "kind": "stop",
            "target": world["other_host"].pk,
            "every_minutes": "60",
            "keep": "3",
            "name": "x9",
            "endpoint": "https://x9:8443",
            "secret": "s",
        }
        if pattern.name.startswith("api-"):
            response = api_post(client, path, token, fields)
        else:
            response = viewer_client.post(path, fields)
        assert response.status_code == 403, f"{pattern.name}: {response.status_code}"
        tried.append(pattern.name)
        assert AuditEvent.objects.filter(
            action=pattern.name, outcome="forbidden", username="vic"
        ).exists(), pattern.name
    assert len(tried) >= 20
    assert row_counts() == before
    assert not SnapshotSchedule.objects.exists()
    assert Operation.objects.get(pk=world["other_operation"].pk).status == "pending"


# (h) The audit trail


def test_a_forbidden_attempt_is_on_the_audit_trail_with_who_what_and_where(viewer_client, world):
    viewer_client.post(f"/hosts/{world['host'].pk}/remove/", REMOTE_ADDR="198.51.100.7")
    event = AuditEvent.objects.get(action="host-remove")
    assert (event.outcome, event.username, event.object_type) == ("forbidden", "vic", "host")
    assert (event.object_id, event.address) == (str(world["host"].pk), "198.51.100.7")
    assert Host.objects.filter(pk=world["host"].pk).exists()


def test_a_forbidden_api_attempt_is_on_the_audit_trail(client, viewer_user, world):
    token = issue_token(viewer_user, "t")[1]
    api_post(client, f"/api/operations/{world['other_operation'].pk}/cancel/", token, {})
    event = AuditEvent.objects.get(action="api-operation-cancel")
    assert (event.outcome, event.username, event.object_type) == ("forbidden", "vic", "operation")
