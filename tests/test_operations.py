"""Asking for operations and following them: permissions, preconditions, the busy refusal,
the cheap polled fragment, cancel, history. Database only; the lab tests run them for real."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from panel.hosts.risks import checkpoint_risks
from panel.models import Operation
from panel.operations.runner import run
from panel.operations.tasks import run_operation
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = pytest.mark.django_db


def post(client, instance, **fields):
    return client.post(f"/containers/{instance.pk}/operations/", fields, follow=True)


def make_operation(instance, status="running", kind="stateful_snapshot", **fields) -> Operation:
    fields.setdefault("started_at", timezone.now() if status != "pending" else None)
    return Operation.objects.create(kind=kind, instance=instance, instance_name=instance.name,
                                    source_host=instance.host, status=status, **fields)  # fmt: skip


def test_viewers_cannot_start_operations_and_nothing_is_queued(viewer_client):
    instance = make_instance(make_host())
    response = viewer_client.post(f"/containers/{instance.pk}/operations/", {"kind": "stop"})
    assert response.status_code == 403
    assert not Operation.objects.exists()


def test_an_operator_gets_a_pending_operation_with_complete_parameters(operator_client):
    instance = make_instance(make_host())
    response = post(operator_client, instance, kind="stateful_snapshot", expires_in="1d")
    operation = Operation.objects.get()
    assert response.redirect_chain[-1][0] == f"/operations/{operation.pk}/"
    assert operation.status == Operation.Status.PENDING
    assert operation.params["snapshot"].startswith("snap-")
    assert operation.params["expires_at"] > timezone.now().isoformat()
    assert operation.requested_by.username == "otto"
    assert operation.events.get().stage == "queued"


@pytest.mark.parametrize(
    ("status", "fields", "refusal"),
    [
        ("Stopped", {"kind": "stop"}, "needs it RUNNING"),
        ("Running", {"kind": "start"}, "needs it STOPPED"),
        ("Stopped", {"kind": "start_fresh"}, "no saved state to discard"),
        ("Running", {"kind": "restore", "snapshot": "nope"}, "no snapshot named"),
        ("Running", {"kind": "snapshot", "snapshot": "../etc"}, "Use 1 to 63 letters"),
        ("Running", {"kind": "snapshot", "snapshot": "x" * 64}, "at most 63"),
        ("Running", {"kind": "reboot-the-world"}, "not one of the available choices"),
    ],
)
def test_it_refuses_what_cannot_work_now_and_says_why(operator_client, status, fields, refusal):
    instance = make_instance(make_host(), status=status)
    page = post(operator_client, instance, **fields).content.decode()
    assert "Not started:" in page
    assert refusal in page
    assert not Operation.objects.exists()


def test_stateful_actions_are_refused_on_a_host_that_cannot_checkpoint(operator_client):
    host = make_host(facts={"server": "lxd", "server_version": "6.6", "driver": "lxc"})
    instance = make_instance(host)
    page = post(operator_client, instance, kind="stateful_stop").content.decode()
    assert "removed CRIU support" in page
    assert not Operation.objects.exists()
    detail = operator_client.get(f"/containers/{instance.pk}/").content.decode()
    assert "Stateful actions are not offered" in detail


def test_an_existing_snapshot_name_is_refused():
    instance = make_instance(make_host())
    make_snapshot(instance, "taken")
    from panel.web.forms import precondition_refusal

    assert "already exists" in precondition_refusal(instance, "snapshot", "taken")


def test_a_busy_container_refuses_a_second_operation_naming_the_first(operator_client):
    instance = make_instance(make_host())
    active = make_operation(instance)
    page = post(operator_client, instance, kind="stop").content.decode()
    since = timezone.localtime(active.started_at).strftime("%H:%M")
    assert f"busy: operation #{active.pk} (stateful snapshot) is running since {since}" in page
    assert f'href="/operations/{active.pk}/"' in page
    assert Operation.objects.count() == 1


def test_the_database_itself_refuses_two_active_operations_on_one_container():
    instance = make_instance(make_host())
    make_operation(instance, status="pending")
    with pytest.raises(IntegrityError):
        make_operation(instance, status="running", kind="stop")


def test_finished_operations_do_not_block_new_ones():
    instance = make_instance(make_host())
    make_operation(instance, status="failed")
    make_operation(instance, status="succeeded")
    assert make_operation(instance, status="pending").pk


def test_the_progress_fragment_polls_while_active_and_stops_with_286(viewer_client):
    operation = make_operation(make_instance(make_host()), progress_text="fs_progress: 12MB")
    fragment = viewer_client.get(
        f"/operations/{operation.pk}/progress/", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert b'hx-trigger="every 1s"' in fragment.content
    assert b"fs_progress: 12MB" in fragment.content
    assert b"<progress aria-label" in fragment.content  # activity indicator: no fraction known
    Operation.objects.filter(pk=operation.pk).update(status="succeeded", outcome="All good.")
    done = viewer_client.get(
        f"/operations/{operation.pk}/progress/", headers={"HX-Request": "true"}
    )
    assert done.status_code == 286
    assert b"All good." in done.content
    assert b"hx-trigger" not in done.content


def test_the_progress_fragment_is_cheap(viewer_client, django_assert_num_queries):
    operation = make_operation(make_instance(make_host()))
    # The session, the user with their role (one statement), the operation without its
    # result; a template that needs more of the row pays a query per poll (PROGRESS_UNREAD).
    with django_assert_num_queries(3):
        viewer_client.get(f"/operations/{operation.pk}/progress/", headers={"HX-Request": "true"})


@pytest.mark.parametrize(
    ("source_facts", "target_facts", "names", "queries"),
    [
        ({"server": "lxd"}, {"server": "incus"}, "LXD and Incus", 3),
        ({"server": "incus"}, None, "Incus", 3),
        # Facts that do not name the server (before trust): the hosts are loaded to ask.
        ({"server": "lxd"}, {"api_extensions": ["dev_incus_events"]}, "LXD and Incus", 5),
    ],
)
def test_the_progress_fragment_names_the_servers_from_the_row_it_reads(
    operator_client, django_assert_num_queries, source_facts, target_facts, names, queries
):
    source = make_host("src", facts=source_facts)
    target = make_host("dst", facts=target_facts) if target_facts is not None else None
    operation = make_operation(make_instance(source), kind="migrate", target_host=target,
                               progress_text="Transferring 40%", may_cancel=False)  # fmt: skip
    with django_assert_num_queries(queries):
        page = operator_client.get(
            f"/operations/{operation.pk}/progress/", headers={"HX-Request": "true"}
        ).content.decode()
    assert f"{names}: Transferring 40%" in page
    assert f"{names} does not allow it" in page


def test_the_progress_fragment_checks_access_on_every_poll(
    client, operator_user, operator_client, admin_client
):
    operation = make_operation(make_instance(make_host()), may_cancel=True)
    url = f"/operations/{operation.pk}/progress/"
    htmx = {"HX-Request": "true"}
    assert b"Cancel</button>" in operator_client.get(url, headers=htmx).content
    assert b"Cancel</button>" in admin_client.get(url, headers=htmx).content

    operator_user.groups.clear()  # no longer an operator: the very next poll knows
    assert b"Cancel</button>" not in operator_client.get(url, headers=htmx).content
    operator_user.is_active = False
    operator_user.save()
    assert operator_client.get(url, headers=htmx).status_code == 302  # signed out
    assert client.get(url, headers=htmx)["Location"].startswith("/accounts/login/")
    assert admin_client.get("/operations/999999/progress/", headers=htmx).status_code == 404


def test_a_logged_out_or_password_changed_session_no_longer_polls(operator_user, operator_client):
    operation = make_operation(make_instance(make_host()))
    url = f"/operations/{operation.pk}/progress/"
    assert operator_client.get(url).status_code == 200
    stolen = operator_client.cookies["sessionid"].value
    operator_user.set_password("an-entirely-new-pass-phrase")
    operator_user.save()
    assert operator_client.get(url).status_code == 302  # the session's hash no longer matches

    from django.test import Client

    thief = Client()
    thief.cookies["sessionid"] = stolen
    assert thief.get(url).status_code == 302
    thief.cookies["sessionid"] = "x" * 5  # malformed keys are refused too
    assert thief.get(url).status_code == 302


def test_a_session_verified_once_still_ends_where_its_row_or_keys_do(
    operator_user, operator_client, caplog
):
    """The session store keeps a verified payload (panel/accounts/sessions.py), never the
    session: every poll still reads the row, and the keys that signed it still count."""
    from django.contrib.sessions.models import Session
    from django.test import override_settings

    from panel.accounts.sessions import _verified_payload

    operation = make_operation(make_instance(make_host()))
    url = f"/operations/{operation.pk}/progress/"
    assert operator_client.get(url).status_code == 200
    kept = _verified_payload.cache_info().hits
    assert operator_client.get(url).status_code == 200
    assert _verified_payload.cache_info().hits == kept + 1  # the same bytes: not verified again

    key = operator_client.cookies["sessionid"].value
    session = Session.objects.get(session_key=key)
    signed, tampered = session.session_data, session.session_data[:-2] + "xx"
    Session.objects.filter(session_key=key).update(session_data=tampered)
    with caplog.at_level("WARNING", logger="django.security.SuspiciousSession"):
        assert thief_with(key).get(url).status_code == 302
    assert "Session data corrupted" in caplog.text  # Django's own words, each time
    Session.objects.filter(session_key=key).update(session_data=signed)
    assert thief_with(key).get(url).status_code == 200

    other_key = "another-key-" + "k" * 50
    with override_settings(SECRET_KEY=other_key):  # the payload was verified under the old key
        assert thief_with(key).get(url).status_code == 302
    with override_settings(SECRET_KEY=other_key, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert thief_with(key).get(url).status_code == 200  # a rotated key still signs in

    Session.objects.all().delete()  # signed out in every browser
    assert thief_with(key).get(url).status_code == 302
    assert operator_client.get(url).status_code == 302


def thief_with(session_key: str):
    """A browser holding this session's cookie."""
    from django.test import Client

    thief = Client()
    thief.cookies["sessionid"] = session_key
    return thief


def test_a_step_lxd_cannot_cancel_says_so_honestly(operator_client):
    operation = make_operation(make_instance(make_host()), may_cancel=False)
    page = operator_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "This step cannot be cancelled" in page


def test_cancel_of_a_queued_operation_ends_it_before_any_work(operator_client):
    operation = make_operation(make_instance(make_host()), status="pending")
    operator_client.post(f"/operations/{operation.pk}/cancel/")
    operation.refresh_from_db()
    assert operation.status == Operation.Status.CANCELLED
    never = lambda op: pytest.fail("a cancelled operation must not run")  # noqa: E731
    assert run(operation.pk, never, run_operation) is None


def test_cancel_of_a_running_operation_is_a_request_to_lxd(operator_client, viewer_client):
    operation = make_operation(make_instance(make_host()), may_cancel=True)
    assert viewer_client.post(f"/operations/{operation.pk}/cancel/").status_code == 403
    operator_client.post(f"/operations/{operation.pk}/cancel/")
    operation.refresh_from_db()
    assert operation.cancel_requested and operation.status == Operation.Status.RUNNING


def test_a_redelivered_task_finds_its_operation_taken_and_does_nothing():
    operation = make_operation(make_instance(make_host()), status="running")
    assert run(operation.pk, lambda op: pytest.fail("must not run twice"), run_operation) is None


def test_the_history_filters_by_host_container_kind_status_and_user(viewer_client, operator_user):
    h1, h2 = make_host("h1"), make_host("h2")
    a, b = make_instance(h1, "a"), make_instance(h2, "b")
    make_operation(a, status="failed", requested_by=operator_user)
    make_operation(b, status="succeeded", kind="stop")

    def kinds(query: str) -> list[str]:
        page = viewer_client.get(f"/operations/?{query}").context["page"]
        return [operation.instance_name for operation in page.object_list]

    assert sorted(kinds("")) == ["a", "b"]
    assert kinds("host=h2") == ["b"]
    assert kinds("container=a") == ["a"]
    assert kinds("kind=stop") == ["b"]
    assert kinds("status=failed") == ["a"]
    assert kinds("user=otto") == ["a"]


def test_the_dashboard_lists_recent_operations_and_failures(viewer_client):
    make_operation(make_instance(make_host()), status="failed", outcome="Checkpoint failed.")
    page = viewer_client.get("/").content.decode()
    assert "Recent failures" in page and "Checkpoint failed." in page


def test_risks_name_each_device_and_setting_with_its_reason():
    devices = {
        "root": {"type": "disk", "path": "/", "pool": "default"},
        "gpu0": {"type": "gpu"},
        "data": {"type": "disk", "path": "/srv", "source": "/mnt"},
        "eth0": {"type": "nic", "nictype": "physical", "parent": "enp1s0"},
        "eth1": {"type": "nic", "network": "lxdbr0"},
        "web": {"type": "proxy", "listen": "tcp:0.0.0.0:80"},
    }
    config = {"security.nesting": "true", "security.privileged": "true"}
    subjects = [risk.subject for risk in checkpoint_risks(config, devices)]
    assert subjects == ["device data (disk at /srv)", "device eth0 (nic physical)",
                        "device gpu0 (gpu)", "device web (proxy)", "security.nesting",
                        "security.privileged"]  # fmt: skip
    assert checkpoint_risks({}, {"root": devices["root"], "eth1": devices["eth1"]}) == []


def test_the_container_page_says_when_there_is_no_risk(operator_client):
    instance = make_instance(make_host(), expanded_devices={"root": {"type": "disk", "path": "/"}})
    page = operator_client.get(f"/containers/{instance.pk}/").content.decode()
    assert "No known risk" in page
    assert "Stateful snapshot" in page


def test_a_row_read_by_the_prepared_statement_is_the_orm_s_row(django_assert_num_queries):
    from panel.rows import row_by_pk

    operation = make_operation(make_instance(make_host()), result={"checks": [1]}, may_cancel=True)
    with django_assert_num_queries(1):
        fast = row_by_pk(Operation, operation.pk, without=("result",))
    assert fast is not None and row_by_pk(Operation, 10**9) is None
    orm = Operation.objects.get(pk=operation.pk)
    for field in ("started_at", "queued_at", "may_cancel", "params", "status", "instance_id"):
        assert getattr(fast, field) == getattr(orm, field), field
    with django_assert_num_queries(1):  # left out: read when first used, as only() does
        assert fast.result == {"checks": [1]}
