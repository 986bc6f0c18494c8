"""The JSON API: token authentication, every endpoint, and the web's refusals answered in JSON.
Database only: `delay_on_commit` does not fire inside these (non-transactional) tests, so
operations stay pending and nothing reaches LXD."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from panel.accounts.tokens import issue_token
from panel.models import ApiToken, AuditEvent, Bundle, Operation
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_token(admin_user) -> str:
    return issue_token(admin_user, "admin script")[1]


@pytest.fixture
def operator_token(operator_user) -> str:
    return issue_token(operator_user, "ci")[1]


@pytest.fixture
def viewer_token(viewer_user) -> str:
    return issue_token(viewer_user, "dashboard")[1]


def get(client, path: str, token: str, **params):
    return client.get(path, params, headers=bearer(token))


def post(client, path: str, token: str, body: dict | None = None):
    data = json.dumps(body or {})
    return client.post(path, data, content_type="application/json", headers=bearer(token))


def make_operation(instance, status="running", kind="stateful_snapshot", **fields) -> Operation:
    fields.setdefault("started_at", timezone.now() if status != "pending" else None)
    return Operation.objects.create(
        kind=kind,
        instance=instance,
        instance_name=instance.name,
        source_host=instance.host,
        status=status,
        **fields,
    )


def make_ready_bundle(instance, operation=None) -> Bundle:
    bundle = Bundle.objects.create(
        instance=instance,
        instance_name=instance.name,
        operation=operation,
        status=Bundle.Status.READY,
        report="# report",
        manifest={"items": []},
    )
    bundle.file.save("api-test.tar.gz", ContentFile(b"tarball bytes"))
    return bundle


# Authentication


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer lxdp_not-a-real-token", "Basic dXNlcjpwdw==", "Token lxdp_x"],
)
def test_it_answers_401_json_without_a_valid_token(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/hosts/", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json()


def test_a_revoked_token_is_refused(client, viewer_user):
    row, token = issue_token(viewer_user, "old")
    row.revoked_at = timezone.now()
    row.save()
    assert get(client, "/api/hosts/", token).status_code == 401


def test_a_token_of_a_deactivated_user_is_refused(client, viewer_user, viewer_token):
    viewer_user.is_active = False
    viewer_user.save()
    assert get(client, "/api/hosts/", viewer_token).status_code == 401


def test_it_stores_only_the_digest_and_records_when_a_token_was_used(client, viewer_token):
    row = ApiToken.objects.get()
    assert viewer_token not in (row.digest, row.prefix)
    assert viewer_token.startswith(row.prefix)
    assert row.last_used_at is None
    assert get(client, "/api/hosts/", viewer_token).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_browser_session_alone_does_not_authenticate_the_api(admin_client):
    assert admin_client.get("/api/hosts/").status_code == 401
    assert admin_client.post("/api/operations/1/cancel/").status_code == 401


def test_the_token_acts_as_its_user_and_not_as_the_session(admin_client, viewer_token):
    instance = make_instance(make_host())
    response = post(
        admin_client, f"/api/containers/{instance.pk}/operations/", viewer_token, {"kind": "stop"}
    )
    assert response.status_code == 403
    assert not Operation.objects.exists()


def test_unknown_api_paths_and_methods_answer_in_json(client, viewer_token):
    response = get(client, "/api/nothing-here/", viewer_token)
    assert response.status_code == 404
    assert "docs/api.md" in response.json()["error"]
    response = client.delete("/api/hosts/", headers=bearer(viewer_token))
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    response = get(client, "/api/hosts/424242/", viewer_token)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found."}


# Hosts


def test_hosts_show_facts_capabilities_and_only_the_certificate_fingerprint(client, viewer_token):
    make_host(
        "h1",
        server_certificate="-----BEGIN CERTIFICATE-----\nSERVERPEM",
        offered_certificate="-----BEGIN CERTIFICATE-----\nOFFEREDPEM",
        facts={
            "server": "lxd",
            "server_version": "6.6",
            "driver": "lxc",
            "cpu_model": "EPYC",
            "api_extensions": ["a"] * 300,
        },
    )
    from panel.models import Host

    Host.objects.update(server_certificate="", offered_certificate="")  # no real PEM to parse
    Host.objects.filter(name="h1").update(offered_certificate="OFFEREDPEM-secret-ish")
    listing = get(client, "/api/hosts/", viewer_token).json()
    assert listing["count"] == 1
    host = listing["results"][0]
    assert host["facts"]["cpu_model"] == "EPYC"
    assert "api_extensions" not in host["facts"]
    stateful = next(c for c in host["capabilities"] if c["key"] == "stateful_stop")
    assert stateful["state"] == "no"
    assert "6.6" in stateful["reason"]
    detail = get(client, host["url"], viewer_token)
    assert detail.json()["name"] == "h1"
    assert b"OFFEREDPEM" not in detail.content
    assert b"CERTIFICATE" not in detail.content


# Containers


def test_containers_are_filtered_and_paginated_by_100(client, viewer_token):
    h1, h2 = make_host("h1"), make_host("h2")
    for number in range(105):
        make_instance(h1, f"web-{number:03}")
    make_instance(h2, "db", status="Stopped")
    make_instance(h2, "gone", gone_at=timezone.now())
    first = get(client, "/api/containers/", viewer_token).json()
    assert first["count"] == 106
    assert len(first["results"]) == 100
    assert first["previous"] is None
    second = client.get(first["next"], headers=bearer(viewer_token)).json()
    assert len(second["results"]) == 6
    assert second["next"] is None
    stopped = get(client, "/api/containers/", viewer_token, host="h2", state="Stopped").json()
    assert [c["name"] for c in stopped["results"]] == ["db"]
    assert get(client, "/api/containers/", viewer_token, q="web-10").json()["count"] == 5


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"page": "abc"}, 400),
        ({"page": "99"}, 404),
        ({"q": "x" * 64}, 400),
        ({"host": "a\x00b"}, 400),
    ],
)
def test_bad_pages_and_filters_are_refused(client, viewer_token, params, status):
    make_instance(make_host())
    response = get(client, "/api/containers/", viewer_token, **params)
    assert response.status_code == status
    assert "error" in response.json()


def test_a_container_shows_lxc_info_fields_and_its_snapshots(client, viewer_token):
    instance = make_instance(make_host(), expanded_config={"limits.cpu": "2"})
    make_snapshot(instance, "before", stateful=True)
    active = make_operation(instance)
    body = get(client, f"/api/containers/{instance.pk}/", viewer_token).json()
    assert body["name"] == "c1"
    assert body["host"]["name"] == "h1"
    assert body["config"] == {"limits.cpu": "2"}
    assert body["state"]["pid"] == 100
    assert body["snapshots"][0]["name"] == "before"
    assert body["snapshots"][0]["stateful"] is True
    assert set(body["snapshots"][0]) == {"name", "taken_at", "expires_at", "stateful"}
    assert body["active_operation"]["id"] == active.pk


# Starting operations


def test_an_operator_starts_an_operation_and_gets_201_with_its_location(client, operator_token):
    instance = make_instance(make_host())
    response = post(
        client,
        f"/api/containers/{instance.pk}/operations/",
        operator_token,
        {"kind": "stateful_snapshot", "snapshot": "nightly", "expires_in": "1d"},
    )
    assert response.status_code == 201
    operation = Operation.objects.get()
    assert response["Location"].endswith(f"/api/operations/{operation.pk}/")
    assert response.json()["status"] == "pending"
    assert operation.params["snapshot"] == "nightly"
    assert "expires_at" in operation.params
    assert operation.requested_by.username == "otto"


def test_a_restore_uses_the_web_form_and_its_parameters(client, admin_token):
    instance = make_instance(make_host())
    make_snapshot(instance, "before", stateful=True)
    response = post(
        client,
        f"/api/containers/{instance.pk}/operations/",
        admin_token,
        {"kind": "restore", "snapshot": "before", "restore_mode": "filesystem"},
    )
    assert response.status_code == 201
    assert Operation.objects.get().params == {"snapshot": "before", "stateful": False}


@pytest.mark.parametrize(
    ("status", "body", "field", "refusal"),
    [
        ("Stopped", {"kind": "stop"}, "__all__", "needs it RUNNING"),
        ("Running", {"kind": "restore", "snapshot": "nope"}, "__all__", "no snapshot named"),
        ("Running", {"kind": "snapshot", "snapshot": "../etc"}, "snapshot", "Use 1 to 63"),
        ("Running", {"kind": "snapshot", "snapshot": "x" * 64}, "snapshot", "at most 63"),
        ("Running", {"kind": "reboot-the-world"}, "kind", "not one of the available"),
        ("Running", {}, "kind", "required"),
        ("Running", {"kind": ["stop"]}, "kind", "single value"),
        ("Running", {"kind": "stop", "snapshot": {"a": 1}}, "snapshot", "single value"),
    ],
)
def test_it_refuses_what_the_web_refuses_with_field_errors(
    client, operator_token, status, body, field, refusal
):
    instance = make_instance(make_host(), status=status)
    response = post(client, f"/api/containers/{instance.pk}/operations/", operator_token, body)
    assert response.status_code == 400
    assert refusal in " ".join(response.json()["errors"][field])
    assert not Operation.objects.exists()


def test_stateful_kinds_are_refused_on_a_host_that_cannot_checkpoint(client, operator_token):
    host = make_host(facts={"server": "lxd", "server_version": "6.6", "driver": "lxc"})
    instance = make_instance(host)
    response = post(
        client,
        f"/api/containers/{instance.pk}/operations/",
        operator_token,
        {"kind": "stateful_stop"},
    )
    assert response.status_code == 400
    assert "removed CRIU support" in response.json()["error"]


def test_a_busy_container_answers_409_naming_the_active_operation(client, operator_token):
    instance = make_instance(make_host())
    active = make_operation(instance)
    response = post(
        client, f"/api/containers/{instance.pk}/operations/", operator_token, {"kind": "stop"}
    )
    assert response.status_code == 409
    body = response.json()
    assert body["error"].startswith(f"busy: operation #{active.pk} (stateful snapshot)")
    assert body["active_operation"]["url"].endswith(f"/api/operations/{active.pk}/")
    assert Operation.objects.count() == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/containers/{c}/operations/",
        "/api/containers/{c}/migrate/check/",
        "/api/containers/{c}/migrate/",
        "/api/containers/{c}/bundle/",
        "/api/operations/{o}/cancel/",
        "/api/operations/{o}/bundle/",
    ],
)
def test_a_viewer_token_is_refused_on_every_post_and_nothing_is_made(client, viewer_token, path):
    instance = make_instance(make_host())
    make_host("h2")
    operation = make_operation(instance, status="pending")
    response = post(
        client,
        path.format(c=instance.pk, o=operation.pk),
        viewer_token,
        {"kind": "stop", "target": "h2"},
    )
    assert response.status_code == 403
    assert "Only operators" in response.json()["error"]
    assert Operation.objects.get().status == "pending"
    assert not Bundle.objects.exists()
    assert AuditEvent.objects.filter(outcome="forbidden", username="vic").exists()


# Request bodies


def test_a_body_over_64_kib_is_refused_with_413(client, operator_token):
    instance = make_instance(make_host())
    big = {"kind": "stop", "padding": "x" * (64 * 1024)}
    response = post(client, f"/api/containers/{instance.pk}/operations/", operator_token, big)
    assert response.status_code == 413
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'"stop"', "application/json", 400),
        (b'{"kind": "\xff\xfe"}', "application/json", 400),
        (b"kind=stop", "application/x-www-form-urlencoded", 415),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(
    client, operator_token, body, content_type, status
):
    instance = make_instance(make_host())
    response = client.post(
        f"/api/containers/{instance.pk}/operations/",
        body,
        content_type=content_type,
        headers=bearer(operator_token),
    )
    assert response.status_code == status
    assert "error" in response.json()
    assert not Operation.objects.exists()


# Migration


def test_a_migration_check_then_start_resolve_the_strategy_as_the_web_does(client, operator_token):
    instance = make_instance(make_host("h1"))
    target = make_host("h2")
    check = post(
        client,
        f"/api/containers/{instance.pk}/migrate/check/",
        operator_token,
        {"target": "h2", "new_name": "c1-copy"},
    )
    assert check.status_code == 201
    preflight = Operation.objects.get()
    assert (preflight.kind, preflight.target_host, preflight.target_name) == (
        "preflight",
        target,
        "c1-copy",
    )
    preflight.status = "succeeded"
    preflight.save()
    start = post(
        client,
        f"/api/containers/{instance.pk}/migrate/",
        operator_token,
        {"target": target.pk, "strategy": "cold", "keep_source": True},
    )
    assert start.status_code == 201
    migration = Operation.objects.get(kind="migrate")
    assert migration.params["strategy"] == "cold"
    assert migration.params["strategy_reason"] == "Chosen by the user."
    assert migration.params["keep_source"] is True


def test_a_criu_strategy_is_refused_when_a_host_cannot_checkpoint(client, operator_token):
    instance = make_instance(make_host("h1"))
    make_host("h2", facts={"server": "lxd", "server_version": "6.6", "driver": "lxc"})
    response = post(
        client,
        f"/api/containers/{instance.pk}/migrate/",
        operator_token,
        {"target": "h2", "strategy": "live"},
    )
    assert response.status_code == 400
    assert "cannot checkpoint" in response.json()["errors"]["strategy"][0]
    assert not Operation.objects.exists()


def test_a_migration_to_an_unknown_or_the_same_host_is_refused(client, operator_token):
    instance = make_instance(make_host("h1"))
    for target in ("nowhere", "h1", instance.host_id):
        response = post(
            client, f"/api/containers/{instance.pk}/migrate/", operator_token, {"target": target}
        )
        assert response.status_code == 400
        assert "target" in response.json()["errors"]
    assert not Operation.objects.exists()


# Following and cancelling


def test_polling_an_operation_shows_progress_timeline_and_outcome(client, viewer_token):
    operation = make_operation(
        make_instance(make_host()), stage="dump", progress_text="12 MB", progress_fraction=0.5
    )
    operation.log("Checkpointing.")
    body = get(client, f"/api/operations/{operation.pk}/", viewer_token).json()
    assert (body["active"], body["stage"], body["progress_fraction"]) == (True, "dump", 0.5)
    assert body["events"][0]["message"] == "Checkpointing."
    Operation.objects.filter(pk=operation.pk).update(
        status="succeeded",
        finished_at=timezone.now(),
        outcome="Snapshot taken.",
        container_state_after="RUNNING",
        downtime_seconds=0.4,
        result={"phases": []},
    )
    body = get(client, f"/api/operations/{operation.pk}/", viewer_token).json()
    assert body["active"] is False
    assert body["outcome"] == "Snapshot taken."
    assert body["duration_seconds"] >= 0
    assert body["downtime_seconds"] == 0.4
    assert body["result"] == {"phases": []}


def test_operations_are_listed_with_the_web_filters(client, viewer_token, operator_user):
    h1, h2 = make_host("h1"), make_host("h2")
    make_operation(make_instance(h1, "a"), status="failed", requested_by=operator_user)
    make_operation(make_instance(h2, "b"), status="succeeded", kind="stop")
    migrated = make_operation(
        make_instance(h1, "c"), status="failed", kind="migrate", target_host=h2
    )

    def names(**f):
        return [
            o["container"]["name"]
            for o in get(client, "/api/operations/", viewer_token, **f).json()["results"]
        ]

    assert names(host="h2") == ["c", "b"]
    assert names(status="failed", kind="migrate") == [migrated.instance_name]
    assert names(user="otto") == ["a"]
    assert get(client, "/api/operations/", viewer_token, kind="nope").status_code == 400


def test_cancel_ends_a_queued_operation_and_asks_a_running_one(client, operator_token):
    queued = make_operation(make_instance(make_host(), "a"), status="pending")
    running = make_operation(make_instance(make_host("h2"), "b"))
    response = post(client, f"/api/operations/{queued.pk}/cancel/", operator_token)
    assert (response.status_code, response.json()["cancel"]) == (200, "cancelled")
    assert response.json()["operation"]["status"] == "cancelled"
    response = post(client, f"/api/operations/{running.pk}/cancel/", operator_token)
    assert (response.status_code, response.json()["cancel"]) == (202, "requested")
    running.refresh_from_db()
    assert running.cancel_requested is True
    assert post(client, f"/api/operations/{queued.pk}/cancel/", operator_token).status_code == 409


# Bundles


def test_bundles_are_listed_and_read_by_everyone_but_downloaded_by_operators(
    client, viewer_token, operator_token
):
    bundle = make_ready_bundle(make_instance(make_host()))
    listing = get(client, "/api/bundles/", viewer_token).json()
    assert listing["results"][0]["download_url"].endswith(f"/api/bundles/{bundle.pk}/download/")
    detail = get(client, f"/api/bundles/{bundle.pk}/", viewer_token).json()
    assert (detail["report"], detail["manifest"]) == ("# report", {"items": []})
    refused = get(client, f"/api/bundles/{bundle.pk}/download/", viewer_token)
    assert refused.status_code == 403
    assert "Only operators" in refused.json()["error"]
    download = get(client, f"/api/bundles/{bundle.pk}/download/", operator_token)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"tarball bytes"
    assert f"lxd-bundle-{bundle.pk}-c1.tar.gz" in download["Content-Disposition"]


def test_a_bundle_without_a_file_is_404(client, operator_token):
    instance = make_instance(make_host())
    bundle = Bundle.objects.create(instance=instance, instance_name="c1")
    assert get(client, f"/api/bundles/{bundle.pk}/download/", operator_token).status_code == 404


def test_an_operator_collects_bundles_for_a_container_and_an_operation(client, operator_token):
    instance = make_instance(make_host())
    operation = make_operation(instance, status="failed")
    response = post(client, f"/api/containers/{instance.pk}/bundle/", operator_token)
    assert response.status_code == 202
    assert response.json()["status"] == "collecting"
    assert response["Location"] == response.json()["url"]
    response = post(client, f"/api/operations/{operation.pk}/bundle/", operator_token)
    assert response.status_code == 202
    assert Bundle.objects.get(operation=operation).requested_by.username == "otto"
    assert Bundle.objects.count() == 2


# The API tokens page


def test_a_token_is_shown_once_and_then_only_its_prefix(client, viewer_client):
    response = viewer_client.post("/tokens/", {"name": "laptop"})
    token = response.context["new_token"]
    assert token.startswith("lxdp_")
    assert token.encode() in response.content
    assert "no-store" in response["Cache-Control"]
    page = viewer_client.get("/tokens/")
    assert token.encode() not in page.content
    assert ApiToken.objects.get().prefix.encode() in page.content
    assert get(client, "/api/hosts/", token).status_code == 200


def test_a_user_revokes_their_own_token_but_not_someone_elses(client, viewer_client, operator_user):
    mine, token = issue_token(
        ApiToken._meta.get_field("user").related_model.objects.get(username="vic"), "mine"
    )
    theirs, _ = issue_token(operator_user, "theirs")
    assert viewer_client.post(f"/tokens/{theirs.pk}/revoke/").status_code == 404
    assert viewer_client.post(f"/tokens/{mine.pk}/revoke/").status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None
    assert theirs.revoked_at is None
    assert get(client, "/api/hosts/", token).status_code == 401


def test_a_token_name_over_100_characters_is_refused(viewer_client):
    response = viewer_client.post("/tokens/", {"name": "n" * 101})
    assert response.status_code == 400
    assert b"at most 100 characters" in response.content
    assert not ApiToken.objects.exists()


# Management commands


def test_api_token_create_prints_a_working_token_once_and_revoke_ends_it(
    client, viewer_user, capsys
):
    call_command("api_token", "create", "vic", "cron")
    token = capsys.readouterr().out.strip()
    assert get(client, "/api/hosts/", token).status_code == 200
    call_command("api_token", "list", "vic")
    assert "cron" in capsys.readouterr().out
    call_command("api_token", "revoke", token[:8])
    assert get(client, "/api/hosts/", token).status_code == 401


def test_the_panel_command_runs_an_operation_with_the_same_rules(
    operator_user, viewer_user, capsys
):
    instance = make_instance(make_host())
    with pytest.raises(CommandError, match="Only operators"):
        call_command("panel", "run", "vic", "h1", "c1", "stop")
    with pytest.raises(CommandError, match="needs it STOPPED"):
        call_command("panel", "run", "otto", "h1", "c1", "start")
    assert not Operation.objects.exists()
    call_command("panel", "run", "otto", "h1", "c1", "snapshot", "--snapshot", "s1")
    operation = Operation.objects.get()
    assert (operation.params, operation.requested_by) == ({"snapshot": "s1"}, operator_user)
    with pytest.raises(CommandError, match="busy"):
        call_command("panel", "run", "otto", "h1", "c1", "stop")
    with pytest.raises(CommandError, match="still pending"):
        call_command("panel", "show", str(operation.pk), "--wait", "--timeout", "0")
    call_command("panel", "operations", "--container", "c1")
    assert f"#{operation.pk}\tsnapshot\tc1\tpending" in capsys.readouterr().out
    call_command("panel", "cancel", "otto", str(operation.pk))
    operation.refresh_from_db()
    assert operation.status == "cancelled"
    call_command("panel", "bundle", "otto", "--container", "h1/c1")
    assert Bundle.objects.get().instance == instance


def test_the_panel_command_lists_and_migrates(operator_user, capsys):
    make_instance(make_host("h1"))
    make_host("h2")
    call_command("panel", "hosts")
    call_command("panel", "containers", "--host", "h1")
    out = capsys.readouterr().out
    assert "h2\tonline" in out
    assert "h1\tc1\tRunning" in out
    call_command("panel", "migrate", "otto", "h1", "c1", "h2", "--check")
    assert Operation.objects.get().kind == "preflight"
