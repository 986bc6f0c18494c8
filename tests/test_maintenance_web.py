"""A host's maintenance through the web, the API and the shell, without LXD: the maintenance
mode and what it refuses, who may do what, a drawn-up plan shown and confirmed, the parent's
page. Plans drawn up by a real worker against real hosts: tests/test_maintenance_lab.py."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django.utils.html import escape

from panel.accounts.tokens import issue_token
from panel.maintenance import parent as maintenance
from panel.models import AuditEvent, HostMaintenance, MaintenancePlan, Operation, SnapshotSchedule
from panel.operations.preflight import FAIL, Side, blocked, run_checks
from panel.operations.schedules import run_due_schedules
from tests.helpers import make_host, make_instance
from tests.test_maintenance_parent import planned

pytestmark = pytest.mark.django_db


@pytest.fixture
def host1():
    return make_host("host1")


@pytest.fixture
def in_maintenance(host1, admin_user):
    return HostMaintenance.objects.create(
        host=host1, set_by=admin_user, set_by_name="ada", reason="kernel 6.19"
    )


def test_an_admin_sets_maintenance_mode_and_the_host_page_says_who_when_and_why(
    admin_client, host1
):
    response = admin_client.post(f"/hosts/{host1.pk}/maintenance/mode/", {"reason": "kernel 6.19"})
    assert response.status_code == 302
    page = admin_client.get(f"/hosts/{host1.pk}/").content.decode()
    assert (
        "In maintenance mode" in page and "kernel 6.19" in page and "<strong>ada</strong>" in page
    )
    assert AuditEvent.objects.filter(action="maintenance.mode.set", detail="reason: kernel 6.19")
    admin_client.post(f"/hosts/{host1.pk}/maintenance/mode/clear/")
    assert not HostMaintenance.objects.exists()
    assert AuditEvent.objects.filter(action="maintenance.mode.clear").exists()


def test_only_administrators_set_the_mode_and_operators_plan(operator_client, viewer_client, host1):
    assert (
        operator_client.post(f"/hosts/{host1.pk}/maintenance/mode/", {"reason": "x"}).status_code
        == 403
    )
    assert not HostMaintenance.objects.exists()
    refused = viewer_client.post(f"/hosts/{host1.pk}/maintenance/plan/", {"mode": "checkpoint"})
    assert refused.status_code == 403
    asked = operator_client.post(
        f"/hosts/{host1.pk}/maintenance/plan/", {"mode": "checkpoint", "policy": "stop"}
    )
    plan = MaintenancePlan.objects.get()
    assert asked["Location"] == f"/maintenance/{plan.pk}/"
    assert plan.preflight.kind == Operation.Kind.MAINTENANCE_PLAN and plan.state == "drawing"
    assert "Reading" not in viewer_client.get(f"/maintenance/{plan.pk}/").content.decode()


def test_a_host_in_maintenance_refuses_new_operations_and_migrations_saying_why(
    admin_client, host1, in_maintenance
):
    instance = make_instance(host1, "c1")
    elsewhere = make_instance(make_host("host2"), "c2")
    response = admin_client.post(
        f"/containers/{instance.pk}/operations/", {"kind": "stop"}, follow=True
    )
    page = response.content.decode()
    assert "Not started: Not now: host1 is in maintenance mode, set by ada" in page
    assert "Operations on this container are refused until then" in page
    assert "kernel 6.19" in page and not Operation.objects.exists()
    response = admin_client.post(
        f"/containers/{elsewhere.pk}/migrate/check/",
        {"target": host1.pk, "strategy": "auto"},
        follow=True,
    )
    assert "host1 is in maintenance mode" in response.content.decode()
    assert not Operation.objects.exists()


def test_the_api_refuses_the_same_with_the_same_words(admin_user, host1, in_maintenance):
    from django.test import Client

    token = issue_token(admin_user, "t")[1]
    instance = make_instance(host1, "c1")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post(
        f"/api/containers/{instance.pk}/operations/",
        {"kind": "stop"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "host1 is in maintenance mode, set by ada" in response.json()["error"]


def test_scheduled_snapshots_on_a_host_in_maintenance_pause_and_say_so(host1, in_maintenance):
    instance = make_instance(host1, "c1")
    schedule = SnapshotSchedule.objects.create(
        instance=instance, every_minutes=60, keep=3, next_run_at=timezone.now()
    )
    assert run_due_schedules() == 0
    schedule.refresh_from_db()
    assert schedule.last_note.startswith("Paused at ")
    assert "host1 is in maintenance mode" in schedule.last_note
    assert schedule.next_run_at > timezone.now() and not Operation.objects.exists()


def test_the_migration_pre_flight_fails_a_target_in_maintenance_for_every_strategy():
    facts = {"server_version": "5.0.2", "architectures": ["x86_64"]}
    source = Side("h1", True, True, "", facts)
    target = Side("h2", True, True, "", {**facts, "maintenance": "h2 is in maintenance mode"})
    checks = run_checks(source, target, {"architecture": "x86_64"}, "", "c1", False)
    check = next(c for c in checks if c.key == "maintenance")
    assert check.status == FAIL and check.reason == "h2 is in maintenance mode"
    assert all(blocked(checks, s) for s in ("live", "stateful_move", "cold", "stopped"))


def drawn(host, items, mode="evacuate", **fields) -> MaintenancePlan:
    """A plan as the worker leaves it once drawn up."""
    return MaintenancePlan.objects.create(
        host=host, mode=mode, items=items, summary="2 containers: 1 moved.", **fields
    )


def test_a_plan_shows_each_container_then_starts_when_confirmed(admin_client, host1):
    make_host("host2")
    moving, stuck = make_instance(host1, "web"), make_instance(host1, "gpu")
    plan = drawn(
        host1,
        [
            planned(
                "web",
                moving,
                "migrate",
                target="host2",
                strategy="stateful_move",
                fate="moves to host2: checkpoint, move, restore",
                expected_downtime=1.42,
                expected_basis="median of 3 migrations by checkpoint, move, restore",
            ),
            planned(
                "gpu",
                stuck,
                "stop",
                fate="stopped cleanly on host1: no other host can take it",
                problems=["host2: device gpu0 (gpu): passthrough"],
            ),
        ],
    )
    page = admin_client.get(f"/maintenance/{plan.pk}/").content.decode()
    for text in (
        "moves to host2: checkpoint, move, restore",
        "1.42 s",
        "median of 3",
        "stopped cleanly on host1",
        "host2: device gpu0 (gpu): passthrough",
        "Confirm and start",
    ):
        assert escape(text) in page, text
    response = admin_client.post(f"/maintenance/{plan.pk}/confirm/")
    parent = Operation.objects.get(kind=Operation.Kind.MAINTENANCE)
    assert response["Location"] == f"/operations/{parent.pk}/"
    confirmed = AuditEvent.objects.get(action="maintenance.confirm")
    assert "web: moves to host2" in confirmed.detail and "gpu: stopped cleanly" in confirmed.detail
    maintenance.start(parent.pk)
    page = admin_client.get(f"/operations/{parent.pk}/").content.decode()
    assert "Every container" in page and f"plan #{plan.pk}" in page
    child = parent.children.get(instance=moving)
    assert child.kind == "migrate" and child.target_host.name == "host2"
    assert child.params["strategy"] == "stateful_move"
    assert (
        f"maintenance operation #{parent.pk}"
        in admin_client.get(f"/operations/{child.pk}/").content.decode()
    )
    fragment = admin_client.get(
        f"/operations/{parent.pk}/children/", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200 and "hx-trigger" in fragment.content.decode()


def test_a_stale_or_running_plan_is_not_confirmed_and_says_why(admin_client, host1):
    instance = make_instance(host1, "web")
    plan = drawn(host1, [planned("web", instance)], mode="checkpoint")
    MaintenancePlan.objects.filter(pk=plan.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=1)
    )
    response = admin_client.post(f"/maintenance/{plan.pk}/confirm/", follow=True)
    assert "Not started: This plan is over 15 minutes old" in response.content.decode()
    assert not Operation.objects.exists()


def test_checking_again_keeps_the_choices_made_on_the_plan(operator_client, host1):
    make_host("host2")
    instance = make_instance(host1, "web")
    plan = drawn(host1, [planned("web", instance, "migrate", target="host2")])
    operator_client.post(
        f"/maintenance/{plan.pk}/recheck/",
        {"policy": "cold", "target:web": "host2", "skip:web": "on"},
    )
    again = MaintenancePlan.objects.exclude(pk=plan.pk).get()
    assert again.mode == "evacuate" and again.policy == "cold"
    assert again.choices == {"targets": {"web": "host2"}, "skip": ["web"]}


def test_bring_back_is_refused_when_nothing_was_checkpointed_or_moved(operator_client, host1):
    response = operator_client.post(
        f"/hosts/{host1.pk}/maintenance/plan/",
        {"mode": "bring_back", "policy": "leave"},
        follow=True,
    )
    assert "There is nothing to bring back to host1" in response.content.decode()


def test_the_api_sets_the_mode_asks_for_a_plan_and_confirms_it(admin_user, viewer_user, host1):
    from django.test import Client

    admin = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(admin_user, 't')[1]}")
    viewer = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(viewer_user, 't')[1]}")
    body = json.dumps({"reason": "new disks"})
    assert (
        viewer.post(
            f"/api/hosts/{host1.pk}/maintenance/", body, content_type="application/json"
        ).status_code
        == 403
    )
    answer = admin.post(
        f"/api/hosts/{host1.pk}/maintenance/", body, content_type="application/json"
    )
    assert answer.json()["maintenance"]["reason"] == "new disks"
    assert answer.json()["maintenance"]["set_by"] == "ada"
    instance = make_instance(host1, "web")
    asked = admin.post(
        f"/api/hosts/{host1.pk}/maintenance/plans/",
        json.dumps({"mode": "checkpoint", "skip:web": True}),
        content_type="application/json",
    )
    assert asked.status_code == 201 and asked.json()["state"] == "drawing"
    assert asked.json()["choices"] == {"targets": {}, "skip": ["web"]}
    plan = drawn(host1, [planned("web", instance)], mode="checkpoint")
    started = admin.post(f"/api/maintenance/{plan.pk}/confirm/")
    assert started.status_code == 201 and started.json()["kind"] == "maintenance"
    assert admin.get(f"/api/maintenance/{plan.pk}/").json()["state"] == "confirmed"
    again = admin.post(f"/api/maintenance/{plan.pk}/confirm/")
    assert again.status_code == 409 and "confirmed already" in again.json()["error"]
    cleared = admin.delete(f"/api/hosts/{host1.pk}/maintenance/")
    assert cleared.json()["maintenance"] is None


def test_the_shell_does_the_same_as_the_same_user(admin_user, viewer_user, host1):
    out = io.StringIO()
    call_command("maintenance", "set", "ada", "host1", "--reason", "kernel 6.19", stdout=out)
    assert "host1 is in maintenance mode, set by ada" in out.getvalue()
    with pytest.raises(CommandError, match="Only administrators"):
        call_command("maintenance", "clear", "vic", "host1")
    make_host("host2")
    call_command(
        "maintenance",
        "plan",
        "ada",
        "host1",
        "evacuate",
        "--target",
        "web=host2",
        "--skip",
        "db",
        stdout=out,
    )
    plan = MaintenancePlan.objects.get()
    assert plan.choices == {"targets": {"web": "host2"}, "skip": ["db"]}
    instance = make_instance(host1, "web")
    ready = drawn(host1, [planned("web", instance)], mode="checkpoint")
    call_command("maintenance", "show", str(ready.pk), stdout=out)
    assert "web\tstateful_stop" in out.getvalue()
    call_command("maintenance", "confirm", "ada", str(ready.pk), stdout=out)
    assert Operation.objects.filter(kind="maintenance", source_host=host1).exists()
    with pytest.raises(CommandError, match="Only operators"):
        call_command("maintenance", "confirm", "vic", str(ready.pk))
