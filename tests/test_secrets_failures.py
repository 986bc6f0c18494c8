"""Secrets at the boundaries failure groups and notifications added: the group's title and
page, the pre-filled filing link that leaves for a public tracker, the team's note, the
upstream link, the API's failure groups and the webhook's notice. Each uses the one
redaction policy (panel/redaction.py) and knows the failing container's secret values."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from panel.accounts.tokens import issue_token
from panel.failures.filing import filings
from panel.failures.grouping import group_failure
from panel.models import FailureGroup, Operation
from panel.notify.send import payload
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db

DB_PASSWORD = "db-pw-Qx71-failure"


@pytest.fixture
def group() -> FailureGroup:
    """A failed snapshot whose error (written straight to the row, as an older panel did)
    quotes the container's database password."""
    host = make_host("host1", facts={"server": "lxd", "server_version": "5.0.2"})
    instance = make_instance(host, "db", expanded_config={"user.db_password": DB_PASSWORD})
    operation = Operation.objects.create(
        instance=instance, instance_name="db", source_host=host, kind="stateful_snapshot",
        status=Operation.Status.FAILED, outcome="Checkpoint failed: db is still RUNNING.",
        error=f"Error: snapshot dump failed: value {DB_PASSWORD} refused",
    )  # fmt: skip
    operation.log("(as recorded)", "checkpointing")
    return group_failure(operation.pk).group


def test_the_group_s_title_page_and_filing_links_hold_no_container_secret(
    group, operator_client, viewer_client
):
    assert DB_PASSWORD not in group.title and "[REDACTED]" in group.title
    for client in (operator_client, viewer_client):
        assert DB_PASSWORD not in client.get(f"/failures/{group.pk}/").content.decode()
        assert DB_PASSWORD not in client.get("/failures/").content.decode()
    links = filings(group)
    assert links
    for link in links:
        assert DB_PASSWORD not in unquote(link.url) and DB_PASSWORD not in link.body


def test_a_note_with_a_pasted_secret_is_kept_redacted_on_the_page_and_in_the_api(
    group, operator_client, viewer_user, client
):
    note = "workaround: MYSQL_PWD=note-pw-Zx12 mysql -e 'select 1'"
    operator_client.post(f"/failures/{group.pk}/note/", {"note": note})
    group.refresh_from_db()
    assert "note-pw-Zx12" not in group.note and "mysql -e" in group.note
    token = issue_token(viewer_user, "script")[1]
    answer = client.get(f"/api/failures/{group.pk}/", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and "note-pw-Zx12" not in answer.content.decode()


def test_an_upstream_link_with_credentials_is_refused(group, operator_client):
    response = operator_client.post(
        f"/failures/{group.pk}/upstream/",
        {"url": "https://me:gh-pw-Cv34@github.com/lxc/incus/issues/1"},
        follow=True,
    )
    assert "without a user name or password" in response.content.decode()
    group.refresh_from_db()
    assert group.upstream_url == ""


def test_the_webhook_notice_holds_no_container_secret(group):
    operation = group.operations().get()
    notice = payload(operation, None)
    assert DB_PASSWORD not in str(notice) and "[REDACTED]" in notice["operation"]["error"]
