"""Prometheus metrics (token or network restricted) and JSON logs naming the operation."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from panel.logs import JsonFormatter, OperationIdFilter, operation_context
from panel.models import Operation
from panel.operations import lifecycle
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_operations_durations_downtime_queue_and_hosts(client, admin_user):
    host = make_host("h1")
    make_host("h2", status="unreachable")
    started = timezone.now() - dt.timedelta(seconds=12)
    for name, status in (("a", "succeeded"), ("b", "failed")):
        operation = lifecycle.request(make_instance(host, name), "migrate", admin_user,
                                      params={"strategy": "live"})  # fmt: skip
        Operation.objects.filter(pk=operation.pk).update(
            status=status, started_at=started, finished_at=started + dt.timedelta(seconds=7),
            downtime_seconds=0.4,
        )  # fmt: skip
    lifecycle.request(make_instance(host, "c"), "snapshot", admin_user)
    answer = client.get("/metrics")  # the test client comes from 127.0.0.1
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    seen = samples(answer.content.decode())
    assert seen[("panel_operations_total", (("kind", "migrate"), ("status", "failed")))] == 1
    assert seen[("panel_operations_active", (("status", "pending"),))] == 1
    assert (
        seen[("panel_operation_duration_seconds_bucket", (("kind", "migrate"), ("le", "5.0")))] == 0
    )
    assert (
        seen[("panel_operation_duration_seconds_bucket", (("kind", "migrate"), ("le", "10.0")))]
        == 2
    )
    assert (
        seen[("panel_migration_downtime_seconds_bucket", (("le", "0.5"), ("strategy", "live")))]
        == 2
    )
    assert seen[("panel_hosts_online", ())] == 1
    assert ("panel_queue_depth", ()) in seen and seen[("panel_queue_up", ())] in (0, 1)


def test_metrics_refuse_other_networks_unless_given_the_token(settings):
    settings.METRICS_TOKEN = "scrape-me"
    outsider = Client(REMOTE_ADDR="192.0.2.7")
    assert outsider.get("/metrics").status_code == 403
    assert outsider.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        outsider.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200
    )


def test_json_logs_carry_the_operation_on_every_line():
    record = logging.LogRecord("pylxd", logging.INFO, __file__, 1, "GET %s", ("/1.0",), None)
    with operation_context(42):
        OperationIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["operation_id"] == 42 and line["message"] == "GET /1.0"
    assert line["logger"] == "pylxd" and line["level"] == "INFO"
    outside = logging.LogRecord("panel", logging.INFO, __file__, 1, "x", (), None)
    OperationIdFilter().filter(outside)
    assert json.loads(JsonFormatter().format(outside))["operation_id"] is None
