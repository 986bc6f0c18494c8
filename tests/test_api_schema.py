"""The API describes itself: `/api/` lists the endpoints, `/api/schema/` is a valid OpenAPI
3.1 document generated from the code, every real answer (errors and 500s included) is JSON
of the shape the schema gives; hosts are enrolled and removed through it as through the web."""

from __future__ import annotations

import jsonschema
import pytest
from django.test import Client
from django.urls import resolve
from openapi_spec_validator import validate

from panel.accounts.tokens import issue_token
from panel.models import Bundle, Host, MaintenancePlan, Operation
from panel.operations import lifecycle
from tests.helpers import make_host, make_instance, make_snapshot
from tests.test_hosts import a_certificate

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/schema/").json()


@pytest.fixture
def admin_api(admin_user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(admin_user, 'a')[1]}"})


def conforms(spec: dict, response, method: str = "GET") -> dict | None:
    """Check one real answer against the schema of its path, method and status."""
    match = resolve(response.request["PATH_INFO"])
    path = "/" + str(match.route).replace("<int:pk>", "{pk}")
    methods = spec["paths"].get(path, {})
    if match.url_name == "api-not-found" or method.lower() not in methods:
        assert response.status_code in (401, 404, 405)  # OpenAPI names no other path/method
        error = {"$ref": "#/components/schemas/Error"}
        answer = {"content": {"application/json": {"schema": error}}}
    else:
        described = methods[method.lower()]
        assert str(response.status_code) in described["responses"], (path, response.status_code)
        answer = described["responses"][str(response.status_code)]
    if "content" not in answer:
        return None
    assert response["Content-Type"].split(";")[0] in answer["content"]
    if "application/json" not in answer["content"]:
        return None
    schema = {**answer["content"]["application/json"]["schema"], "components": spec["components"]}
    body = response.json()
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    return body


def test_the_schema_is_valid_openapi_and_the_index_lists_every_endpoint(client, spec):
    validate(spec)
    index = client.get("/api/")
    assert index.status_code == 200
    listed = {(e["method"], e["path"]) for e in conforms(spec, index)["endpoints"]}
    described = {(m.upper(), p) for p, methods in spec["paths"].items() for m in methods}
    assert listed == described
    assert ("POST", "/api/hosts/enroll/") in listed
    assert ("POST", "/api/hosts/{pk}/enroll/confirm/") in listed
    assert ("DELETE", "/api/hosts/{pk}/") in listed


def test_the_browsable_page_shows_every_endpoint_and_shape(client, spec):
    page = client.get("/api/docs/").content.decode()
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"<code>{method.upper()} {path}</code>" in page
    assert 'id="shape-OperationDetail"' in page and "progress_fraction" in page


def test_every_read_answers_the_shape_the_schema_gives(spec, admin_api, admin_user):
    host = make_host("h1", facts={"server": "lxd", "server_version": "5.0.2"})
    instance = make_instance(host, "c1", ipv4="10.0.3.5 (eth0)")
    make_snapshot(instance, "s1", stateful=True)
    operation = lifecycle.request(instance, "snapshot", admin_user, params={"snapshot": "s2"})
    Bundle.objects.create(operation=operation, instance=instance, instance_name="c1")
    item = {"name": "c1", "instance": instance.pk, "at": "h1", "status": "Running", "home": "h1",
            "action": "migrate", "fate": "moves to h2", "target": "h2", "strategy": "live",
            "strategy_reason": "", "expected_downtime": 0.7, "expected_basis": "median of 2",
            "problems": [], "warnings": [], "candidates": {"h2": ""}, "checks": []}  # fmt: skip
    plan = MaintenancePlan.objects.create(host=host, mode="evacuate", items=[item], summary="1")
    for path in [
        f"/api/maintenance/{plan.pk}/",
        "/api/hosts/",
        f"/api/hosts/{host.pk}/",
        "/api/containers/",
        f"/api/containers/{instance.pk}/",
        "/api/operations/",
        f"/api/operations/{operation.pk}/",
        "/api/bundles/",
        f"/api/bundles/{Bundle.objects.get().pk}/",
        "/api/containers/?state=Running",
        "/api/operations/?status=nonsense",  # 400
        "/api/containers/9999/",  # 404
        "/api/operations/?page=99",  # 404
    ]:
        conforms(spec, admin_api.get(path))
    assert conforms(spec, admin_api.get(f"/api/containers/{instance.pk}/"))["ipv4"]


def test_every_write_and_refusal_answers_the_shape_the_schema_gives(spec, admin_api, client):
    instance = make_instance(make_host("h1"), "c1")
    url = f"/api/containers/{instance.pk}/operations/"
    started = admin_api.post(url, {"kind": "stop"}, content_type="application/json")
    assert started.status_code == 201
    conforms(spec, started, "POST")
    conforms(spec, admin_api.post(url, {"kind": "start"}, content_type="application/json"), "POST")
    conforms(spec, admin_api.post(url, {"kind": "bogus"}, content_type="application/json"), "POST")
    conforms(spec, admin_api.post(url, "x", content_type="text/plain"), "POST")
    operation = Operation.objects.get()
    cancelled = admin_api.post(f"/api/operations/{operation.pk}/cancel/")
    assert conforms(spec, cancelled, "POST")["cancel"] == "cancelled"
    conforms(spec, client.get("/api/containers/"))  # 401
    conforms(spec, admin_api.delete("/api/containers/"), "DELETE")  # 405, still JSON
    conforms(spec, admin_api.get("/api/no-such-thing/"))


def test_an_admin_enrolls_a_host_through_the_api_as_through_the_web(
    spec, admin_api, tmp_path, operator_user
):
    added = admin_api.post(
        "/api/hosts/enroll/", {"name": "h9", "endpoint": "https://h9.example:8443"},
        content_type="application/json",
    )  # fmt: skip
    body = conforms(spec, added, "POST")
    assert added.status_code == 201 and body["status"] == "enrolling"
    assert body["enrollment"] == Host.Enrollment.FETCHING_CERTIFICATE
    host = Host.objects.get(name="h9")
    confirm = f"/api/hosts/{host.pk}/enroll/confirm/"
    early = admin_api.post(confirm, {"fingerprint": "0" * 64, "secret": "pw"},
                           content_type="application/json")  # fmt: skip
    assert early.status_code == 409 and conforms(spec, early, "POST")

    # The worker fetched the certificate (tests/test_hosts_lab.py does it for real).
    Host.objects.filter(pk=host.pk).update(
        enrollment=Host.Enrollment.AWAITING_CONFIRMATION,
        offered_certificate=a_certificate(tmp_path),
    )
    offered = admin_api.get(f"/api/hosts/{host.pk}/").json()["offered_fingerprint"]
    wrong = admin_api.post(confirm, {"fingerprint": "0" * 64, "secret": "pw"},
                           content_type="application/json")  # fmt: skip
    assert wrong.status_code == 400 and "certificate changed" in wrong.json()["error"]
    trusted = admin_api.post(confirm, {"fingerprint": offered, "secret": "planted-pw-42"},
                             content_type="application/json")  # fmt: skip
    assert conforms(spec, trusted, "POST")["enrollment"] == Host.Enrollment.TRUSTING
    assert "planted-pw-42" not in repr(list(Host.objects.values()))

    operator = Client(headers={"Authorization": f"Bearer {issue_token(operator_user, 'o')[1]}"})
    refused = operator.delete(f"/api/hosts/{host.pk}/")
    assert refused.status_code == 403 and conforms(spec, refused, "DELETE")
    assert admin_api.delete(f"/api/hosts/{host.pk}/").status_code == 204
    assert not Host.objects.filter(pk=host.pk).exists()


def test_a_failure_inside_the_api_answers_json_500_and_the_pages_html(
    admin_user, viewer_client, monkeypatch, spec
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("panel.web.api.views.container_json", broken)
    make_instance(make_host("h1"), "c1")
    token = issue_token(admin_user, "a")[1]
    api = Client(headers={"Authorization": f"Bearer {token}"}, raise_request_exception=False)
    answer = api.get("/api/containers/")
    assert answer.status_code == 500 and answer["Content-Type"] == "application/json"
    assert (
        "failed on this request" in answer.json()["error"] and "boom" not in answer.json()["error"]
    )
    monkeypatch.setattr("panel.web.views.instances.Paginator", broken)
    viewer_client.raise_request_exception = False
    page = viewer_client.get("/containers/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
