"""The task bar on every page, and the toasts of a user's own operations that ended."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from panel.models import Operation
from panel.operations import lifecycle
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def ended(instance, user, status: str, ago: float, outcome: str = "Done.") -> Operation:
    operation = lifecycle.request(instance, "snapshot", user, params={"snapshot": "s"})
    Operation.objects.filter(pk=operation.pk).update(
        status=status, outcome=outcome, finished_at=timezone.now() - dt.timedelta(seconds=ago)
    )
    return operation


def test_every_page_shows_what_runs_and_what_failed_in_the_last_hour(viewer_client, admin_user):
    host = make_host()
    lifecycle.request(make_instance(host, "busy"), "snapshot", admin_user)
    ended(make_instance(host, "f1"), admin_user, "failed", ago=600)
    ended(make_instance(host, "f2"), admin_user, "interrupted", ago=60)
    ended(make_instance(host, "old"), admin_user, "failed", ago=7200)
    page = viewer_client.get("/containers/").content.decode()
    assert "1 running</a>" in page and "2 failed in the last hour</a>" in page
    assert 'hx-get="/taskbar/?since=' in page


def test_a_poll_toasts_only_my_operations_that_ended_since_the_last_one(
    operator_client, operator_user, admin_user
):
    host = make_host()
    since = timezone.now().timestamp()
    mine = ended(make_instance(host, "mine"), operator_user, "succeeded", ago=0, outcome="Taken.")
    ended(make_instance(host, "theirs"), admin_user, "failed", ago=0)
    ended(make_instance(host, "before"), operator_user, "failed", ago=60)
    answer = operator_client.get(f"/taskbar/?since={since - 1}").content.decode()
    assert answer.count('class="toast ') == 1
    assert f"#{mine.pk} Snapshot · mine" in answer and "Taken." in answer
    assert 'hx-swap-oob="beforeend:#toasts"' in answer and 'data-autoclose="12"' in answer
    again = operator_client.get(f"/taskbar/?since={timezone.now().timestamp()}").content
    assert b'class="toast ' not in again


@pytest.mark.parametrize("since", ["", "soon", "1e400", "-1e20", "nan"])
def test_a_bad_since_gives_the_bar_without_toasts(viewer_client, since):
    response = viewer_client.get("/taskbar/", {"since": since})
    assert response.status_code == 200 and b'id="taskbar"' in response.content


def test_a_nul_in_since_is_refused_saying_why(viewer_client):
    response = viewer_client.get("/taskbar/", {"since": "\x00"})
    assert response.status_code == 400 and b"holds a NUL character" in response.content


def test_the_task_bar_is_for_signed_in_users(client):
    assert client.get("/taskbar/").status_code == 302
