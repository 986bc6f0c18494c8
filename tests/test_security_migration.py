"""Migration 0004_i17_security on rows made before it: old tokens bound to their user's
password and their names made inert, the schedules' past snapshots recorded, and stored
logs, operations' words and the audit trail rewritten through the redaction policy."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("panel", "0003_operation_claim_token")]
AFTER = [("panel", "0004_i17_security")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_rows_made_before_the_migration_come_out_safe():
    old = migrate(BEFORE)
    user = old.get_model("auth", "User").objects.create(username="vic", password="pbkdf2$x")
    token = old.get_model("panel", "ApiToken").objects.create(
        user=user, name="backup\u202egpj.exe", prefix="lxdp_abc", digest="d" * 64
    )
    host = old.get_model("panel", "Host").objects.create(name="h1", endpoint="https://10.0.0.1")
    instance = old.get_model("panel", "Instance").objects.create(
        host=host, name="c1", expanded_config={"environment.DB": "env-secret-881"}
    )
    old.get_model("panel", "InstanceLog").objects.create(
        instance=instance, filename="lxc.conf", content="lxc.environment = DB=env-secret-881\n"
    )
    operation = old.get_model("panel", "Operation").objects.create(
        kind="stateful_snapshot", instance=instance, instance_name="c1", source_host=host,
        status="succeeded", params={"snapshot": "auto-20260101-000000", "keep": 2},
        error="MYSQL_PWD=mysql-secret-882 refused",
    )  # fmt: skip
    old.get_model("panel", "OperationEvent").objects.create(
        operation=operation, message="repeating env-secret-881"
    )
    old.get_model("panel", "AuditEvent").objects.create(
        action="host-add", outcome="refused", detail="endpoint=https://u:typed-883@10.0.0.1"
    )

    new = migrate(AFTER)
    token = new.get_model("panel", "ApiToken").objects.get(pk=token.pk)
    assert token.name == "backup<U+202E>gpj.exe" and len(token.password_stamp) == 64
    assert token.scope == "write"  # what old tokens could do, until revoked or re-made
    record = new.get_model("panel", "PanelSnapshot").objects.get()
    assert (record.name, record.scheduled, record.instance_id) == (
        "auto-20260101-000000",
        True,
        instance.pk,
    )
    texts = [
        *new.get_model("panel", "InstanceLog").objects.values_list("content", flat=True),
        *new.get_model("panel", "Operation").objects.values_list("error", flat=True),
        *new.get_model("panel", "OperationEvent").objects.values_list("message", flat=True),
        *new.get_model("panel", "AuditEvent").objects.values_list("detail", flat=True),
    ]
    for secret in ("env-secret-881", "mysql-secret-882", "typed-883"):
        assert all(secret not in text for text in texts), (secret, texts)
    assert "[REDACTED]" in texts[0]
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # as the suite expects
