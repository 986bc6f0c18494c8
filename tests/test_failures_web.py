"""The failures pages, the JSON API and `manage.py failures`, with the three personas: viewers
read, operators file and set status and notes; every change is on the audit trail; bad input
is refused saying why. Database only (tests/test_failures_lab.py does it with real failures)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from panel.accounts.tokens import issue_token
from panel.failures.grouping import group_failure
from panel.models import AuditEvent, Bundle, FailureGroup
from tests.helpers import make_host
from tests.test_failures_grouping import failed

pytestmark = pytest.mark.django_db
UPSTREAM = "https://github.com/checkpoint-restore/criu/issues/2001"


@pytest.fixture
def groups() -> dict:
    """The lab's dump failure on two hosts (one group), and its restore failure."""
    host1, host2 = make_host("host1"), make_host("host2")
    dump = failed("dump-host1", host1, minutes_ago=3)
    group_failure(dump.pk)
    group = group_failure(failed("dump-host2", host2).pk).group
    report = "# LXD bug report\n\n## What was run\n\nlxc snapshot c doomed"
    Bundle.objects.create(operation=dump, instance_name="c", status="ready", report=report)
    restore = group_failure(failed("restore-host1", host1, minutes_ago=1).pk).group
    return {"dump": group, "restore": restore, "operation": dump}


def test_the_list_shows_each_group_with_its_counts_hosts_platforms_and_bundle(
    viewer_client, groups
):
    page = viewer_client.get("/failures/").content.decode()
    dump = groups["dump"]
    assert f'href="/failures/{dump.pk}/"' in page and "vdso: Unexpected rt vDSO area bounds" in page
    assert "host1, host2" in page and "LXD 5.0.2" in page and "New" in page
    assert f'href="/bundles/{dump.latest_bundle().pk}/"' in page
    # newest failure first: dump-host2 ended just now, the restore a minute ago
    assert page.index(f"/failures/{dump.pk}/") < page.index(f"/failures/{groups['restore'].pk}/")


def test_the_list_filters_by_status_host_and_kind_and_hides_ignored_groups(viewer_client, groups):
    FailureGroup.objects.filter(pk=groups["restore"].pk).update(status="ignored")

    def listed(query: str) -> set[int]:
        response = viewer_client.get(f"/failures/{query}")
        return {group.pk for group in response.context["page"].object_list}

    dump, restore = groups["dump"].pk, groups["restore"].pk
    assert listed("") == {dump}
    assert listed("?status=ignored") == {restore} and listed("?status=all") == {dump, restore}
    assert listed("?status=all&host=host2") == {dump}
    assert listed("?status=all&kind=restore") == {restore}
    assert listed("?status=nonsense&host=" + "x" * 500) == set()  # cut and shown, not a 500


def test_a_viewer_reads_a_group_but_cannot_file_it_or_change_it(viewer_client, groups):
    group = groups["dump"]
    page = viewer_client.get(f"/failures/{group.pk}/").content.decode()
    assert "Its operations" in page and f"/operations/{groups['operation'].pk}/" in page
    assert "File this bug upstream" not in page and "Save the note" not in page
    for action, data in (("status", {"status": "ignored"}), ("upstream", {"url": UPSTREAM}),
                         ("note", {"note": "x"})):  # fmt: skip
        assert viewer_client.post(f"/failures/{group.pk}/{action}/", data).status_code == 403
    group.refresh_from_db()
    assert (group.status, group.upstream_url, group.note) == ("new", "", "")


def test_an_operator_files_it_and_later_failures_say_already_reported(operator_client, groups):
    group = groups["dump"]
    page = operator_client.get(f"/failures/{group.pk}/")
    trackers = [filing.tracker.key for filing in page.context["filings"]]
    assert trackers == ["criu", "lxd"]  # CRIU's error on Debian hosts: CRIU upstream first
    assert "https://github.com/checkpoint-restore/criu/issues/new?title=" in page.content.decode()
    response = operator_client.post(f"/failures/{group.pk}/upstream/", {"url": UPSTREAM})
    assert response.status_code == 302
    group.refresh_from_db()
    assert (group.status, group.status_by_name, group.upstream_by_name) == ("filed", "otto", "otto")
    later = failed("dump-host2", group.failures.first().operation.source_host)
    group_failure(later.pk)
    page = operator_client.get(f"/operations/{later.pk}/").content.decode()
    assert f'<strong>Already reported:</strong> <a href="{UPSTREAM}"' in page
    event = AuditEvent.objects.get(action="failure.upstream")
    assert (event.username, event.object_type, event.detail) == (
        "otto",
        "failuregroup",
        f"(none) -> {UPSTREAM}",
    )


def test_the_status_and_the_note_say_who_set_them_and_the_note_shows_on_its_failures(
    operator_client, groups
):
    group, operation = groups["dump"], groups["operation"]
    operator_client.post(f"/failures/{group.pk}/status/", {"status": "fixed"})
    note = "Use CRIU 4.x: Debian 13's criu 4.1.1 knows [vvar_vclock]."
    operator_client.post(f"/failures/{group.pk}/note/", {"note": note})
    page = operator_client.get(f"/failures/{group.pk}/").content.decode()
    assert "Fixed upstream" in page and "by otto" in page and note.replace("'", "&#x27;") in page
    assert (
        note.replace("'", "&#x27;")
        in operator_client.get(f"/operations/{operation.pk}/").content.decode()
    )
    assert AuditEvent.objects.get(action="failure.status").detail == "New -> Fixed upstream"
    assert AuditEvent.objects.get(action="failure.note").detail == f"was: (none)\nnow: {note}"


@pytest.mark.parametrize(
    ("action", "data", "refusal"),
    [
        ("upstream", {"url": "javascript:alert(1)"}, "Enter a valid URL"),
        ("upstream", {"url": "ftp://bugs.example/1"}, "Enter a valid URL"),
        ("upstream", {"url": "https://bugs.example/" + "x" * 600}, "at most 500"),
        # Refused before the view by panel/web/unstorable.py, for the whole request.
        ("upstream", {"url": "https://bugs.example/\x00"}, "holds a NUL character"),
        ("note", {"note": "x" * 2001}, "at most 2000"),
        ("status", {"status": "solved"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_refused_saying_why_and_changes_nothing(
    operator_client, groups, action, data, refusal
):
    group = groups["dump"]
    response = operator_client.post(f"/failures/{group.pk}/{action}/", data, follow=True)
    assert response.status_code in (200, 400) and refusal in response.content.decode()
    group.refresh_from_db()
    assert (group.status, group.upstream_url, group.note) == ("new", "", "")


def api(client, method: str, path: str, token: str, body: dict | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if method == "get":
        return client.get(path, headers=headers)
    return client.post(path, body or {}, content_type="application/json", headers=headers)


def test_the_api_lists_and_shows_groups_to_viewers_and_lets_operators_change_them(
    client, viewer_user, operator_user, groups
):
    viewer, operator = issue_token(viewer_user, "v")[1], issue_token(operator_user, "o")[1]
    group = groups["dump"]
    listing = api(client, "get", "/api/failures/?host=host2", viewer).json()
    assert [g["id"] for g in listing["results"]] == [group.pk]
    assert listing["results"][0]["hosts"]["host2"]["platform"] == "LXD 5.0.2"
    shown = api(client, "get", f"/api/failures/{group.pk}/", viewer).json()
    assert shown["file_upstream"] == [] and len(shown["operations"]) == 2
    assert api(client, "post", f"/api/failures/{group.pk}/status/", viewer,
               {"status": "ignored"}).status_code == 403  # fmt: skip
    refused = api(client, "post", f"/api/failures/{group.pk}/status/", operator, {"status": "x"})
    assert refused.status_code == 400 and refused.json()["error"].startswith("Not saved:")
    done = api(client, "post", f"/api/failures/{group.pk}/upstream/", operator, {"url": UPSTREAM})
    assert done.status_code == 200 and done.json()["status"] == "filed"
    assert done.json()["file_upstream"][0]["tracker"] == "criu"
    note = api(client, "post", f"/api/failures/{group.pk}/note/", operator, {"note": "Use 4.x"})
    assert note.json()["note"] == "Use 4.x" and note.json()["note_by"] == "otto"
    operation = api(client, "get", f"/api/operations/{groups['operation'].pk}/", viewer).json()
    assert operation["failure_group"]["upstream_url"] == UPSTREAM
    assert api(client, "get", "/api/failures/?status=solved", viewer).status_code == 400


def test_the_shell_command_lists_shows_and_changes_groups_with_the_users_role(
    viewer_user, operator_user, groups
):
    group = groups["dump"]
    out = StringIO()
    call_command("failures", "list", "--host", "host1", stdout=out)
    assert f"#{group.pk}\tnew\t2\t" in out.getvalue()
    with pytest.raises(CommandError, match="Refused: Only operators"):
        call_command("failures", "status", "vic", str(group.pk), "ignored")
    with pytest.raises(CommandError, match="Not saved: Enter a valid URL"):
        call_command("failures", "upstream", "otto", str(group.pk), "javascript:x")
    out = StringIO()
    call_command("failures", "upstream", "otto", str(group.pk), UPSTREAM, stdout=out)
    assert f"already reported: {UPSTREAM}" in out.getvalue()
    event = AuditEvent.objects.get(action="failure.upstream")
    assert (event.username, event.address) == ("otto", None)
    out = StringIO()
    call_command("failures", "file", "otto", str(group.pk), stdout=out)
    assert "https://github.com/checkpoint-restore/criu/issues/new?title=" in out.getvalue()
    with pytest.raises(CommandError, match="There is no failure group #999"):
        call_command("failures", "show", "999")


def test_failures_from_before_groups_existed_are_grouped_by_the_shell_and_never_polled(
    viewer_client,
):
    old = failed("dump-host1", minutes_ago=60 * 24)
    page = viewer_client.get(f"/operations/{old.pk}/").content.decode()
    assert 'id="failure-group"' not in page  # no group, and no page polling for one forever
    just_now = failed("dump-host2")
    polled = viewer_client.get(f"/operations/{just_now.pk}/").content.decode()
    assert "Finding this failure" in polled and 'hx-select="#failure-group"' in polled
    out = StringIO()
    call_command("failures", "group", stdout=out)
    assert out.getvalue() == "Grouped 2 failure(s).\n"
    group = FailureGroup.objects.get()
    assert group.count == 2 and group.failures.get(operation=old).opened == "new"
    assert "the first of its cause" in viewer_client.get(f"/operations/{old.pk}/").content.decode()
