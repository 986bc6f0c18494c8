"""The container's row tells the truth the moment an operation ends (issue 15, point 4): the
lifecycle writes the state LXD reported into it in the transaction that ends the operation,
so a follow-up request through the API is accepted at once, never refused on a stale row."""

from __future__ import annotations

import json
import time

import pytest

from panel.accounts.tokens import issue_token
from panel.models import Instance
from tests.conftest import wait_for
from tests.lab_tools import enroll, read_boot_id, read_counter, running_counter

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
ROUNDS = 20


def api_post(client, path: str, token: str, body: dict):
    return client.post(path, json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def ended(client, url: str, token: str) -> dict:
    return wait_for(
        lambda: (lambda data: None if data["active"] else data)(
            client.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        ),
        timeout=120,
        interval=0.05,
        what=f"{url} to end",
    )


def test_a_stateful_stop_then_start_through_the_api_twenty_times_is_never_refused(
    lab, celery_worker, operator_user, client
):
    token = issue_token(operator_user, "stop-start loop")[1]
    lab_host = lab["hosts"][0]
    with running_counter(lab, lab_host, "row") as name:
        instance = Instance.objects.get(host=enroll(lab_host), name=name)
        boot, before = read_boot_id(lab_host, name), read_counter(lab_host, name)
        started = time.monotonic()
        for round_ in range(ROUNDS):
            for kind, expected in (("stateful_stop", "Stopped"), ("start", "Running")):
                response = api_post(client, f"/api/containers/{instance.pk}/operations/",
                                    token, {"kind": kind})  # fmt: skip
                assert response.status_code == 201, (round_, kind, response.json())
                operation = ended(client, response.json()["url"], token)
                assert operation["status"] == "succeeded", (round_, kind, operation["outcome"])
                row = client.get(f"/api/containers/{instance.pk}/",
                                 headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
                assert row["status"] == expected, (round_, kind, row["status"])
        print(f"\n{ROUNDS} stateful stops and starts in {time.monotonic() - started:.1f} s")
        assert read_boot_id(lab_host, name) == boot  # restored every time, never rebooted
        assert read_counter(lab_host, name) >= before
