"""Failure groups from the lab's real failures (Debian 12's CRIU 3.17.1 on this kernel), through
the web client and a real worker: the same failure on two hosts is one group, a different
one another; filing carries the redacted report; the upstream bug shows on later failures.

With PANEL_SAVE_FAILURE_FIXTURES=1 these tests also write the failures they produce to
tests/fixtures/failures/ (tests/test_failures.py normalises those texts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from panel.models import Bundle, FailureGroup, Instance, Operation
from tests.conftest import ROOT, wait_for
from tests.lab_tools import kill_stuck_dumps, running_counter, set_criu
from tests.test_migration_lab import check_then_migrate
from tests.test_operations_lab import enroll, operate, refreshed

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]
FIXTURES = ROOT / "tests" / "fixtures" / "failures"
UPSTREAM = "https://github.com/checkpoint-restore/criu/issues/2001"


def save_fixture(name: str, operation: Operation, how: str) -> None:
    """The failure as the panel recorded it, for the unit tests of the normalisation."""
    if not os.environ.get("PANEL_SAVE_FAILURE_FIXTURES"):
        return
    operation = Operation.objects.select_related("source_host", "target_host").get(pk=operation.pk)
    hosts = [h for h in (operation.source_host, operation.target_host) if h is not None]
    fixture = {
        "how": how,
        "recorded": timezone.now().date().isoformat(),
        "kind": operation.kind,
        "status": operation.status,
        "stages": list(operation.events.values_list("stage", flat=True)),
        "outcome": operation.outcome,
        "error": operation.error,
        "names": [operation.instance_name, *[h.name for h in hosts], *[
            v for v in operation.params.values() if isinstance(v, str)]],
        "hosts": [{"name": h.name, "server": h.facts.get("server"),
                   "server_version": h.server_version} for h in hosts],
    }  # fmt: skip
    FIXTURES.mkdir(parents=True, exist_ok=True)
    Path(FIXTURES / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")


def group_of(operation: Operation) -> FailureGroup:
    """The operation's failure group, written just after its failed status commits (an
    on_commit step of the worker's finish): a test that saw the status may be a moment early."""
    return wait_for(
        lambda: FailureGroup.objects.filter(failures__operation=operation).first(),
        timeout=10,
        what=f"the failure group of operation #{operation.pk}",
    )


def ready_bundle(operation: Operation) -> Bundle:
    return wait_for(
        lambda: Bundle.objects.filter(operation=operation, status=Bundle.Status.READY).first(),
        timeout=120,
        what=f"the bundle of operation #{operation.pk}",
    )


@pytest.fixture
def counters(without_agents):
    """A running counter container on each LXD host, both hosts enrolled; on the way out every
    host is back on the working CRIU (running_counter sees to it). No agents: an agent's
    failing `criu check` would (rightly) make the panel refuse the later checkpoints."""
    lab = without_agents
    host1, host2 = lab["hosts"][0], lab["hosts"][1]
    with running_counter(lab, host1, "fg1") as one, running_counter(lab, host2, "fg2") as two:
        first, second = enroll(host1), enroll(host2)
        yield (
            Instance.objects.get(host=first, name=one),
            Instance.objects.get(host=second, name=two),
        )


def test_the_same_failure_on_two_hosts_is_one_group_filed_once_and_shown_on_later_ones(
    celery_worker, operator_client, counters, lab, settings
):
    on_host1, on_host2 = counters
    good = operate(operator_client, on_host1, "stateful_snapshot", snapshot="good")
    assert good.status == Operation.Status.SUCCEEDED, good.error
    for lab_host in lab["hosts"][:2]:
        set_criu(lab_host, "stock")
    how = "a stateful snapshot on {} with `lab.py criu {} stock` (Debian 12's CRIU 3.17.1)"
    dumps = []
    for instance, name in ((on_host1, "host1"), (on_host2, "host2")):
        dumps.append(operate(operator_client, refreshed(instance), "stateful_snapshot",
                             snapshot="doomed"))  # fmt: skip
        save_fixture(f"dump-{name}", dumps[-1], how.format(name, name))
    restore = operate(operator_client, refreshed(on_host1), "restore", snapshot="good",
                      restore_mode="stateful")  # fmt: skip
    save_fixture("restore-host1", restore, "snapshot 'good' taken with CRIU 4.1.1 (`fixed`), "
                 "restored with `lab.py criu host1 stock` (Debian 12's CRIU 3.17.1)")  # fmt: skip
    assert {op.status for op in (*dumps, restore)} == {Operation.Status.FAILED}

    dump_group = group_of(dumps[0])
    assert group_of(dumps[1]) == dump_group
    assert (dump_group.count, sorted(dump_group.hosts)) == (2, ["host1", "host2"])
    assert (
        dump_group.signature["criu"] == "Error (criu/vdso.c): vdso: Unexpected rt vDSO area bounds"
    )
    assert dump_group.signature["criu_version"] == "3.17.1"
    assert dump_group.status == FailureGroup.Status.NEW and dump_group.component == "criu"
    restore_group = group_of(restore)
    assert restore_group != dump_group and restore_group.signature["phase"] == "restoring"
    listing = operator_client.get("/failures/").content.decode()
    assert f"/failures/{dump_group.pk}/" in listing and f"/failures/{restore_group.pk}/" in listing

    # Filing: an admin pattern redacts the hosts' names from what leaves the panel.
    ready_bundle(dumps[1])
    settings.REDACT_PATTERNS = [r"\bhost[12]\b"]
    page = operator_client.get(f"/failures/{dump_group.pk}/")
    link = next(f for f in page.context["filings"] if f.tracker.key == "criu")
    assert link.url.startswith("https://github.com/checkpoint-restore/criu/issues/new?title=")
    assert len(link.url) <= 8000
    body = parse_qs(urlsplit(link.url).query)["body"][0]
    assert "vdso: Unexpected rt vDSO area bounds" in body and "## What was run" in body
    assert f"lxc snapshot {on_host2.name} doomed --stateful" in body
    assert "host1" not in link.url and "host2" not in link.url and "[REDACTED]" in body
    assert not link.trimmed or "report.md in the panel's bug bundle lxd-bundle-" in body
    print(f"filing link: {len(link.url)} bytes, trimmed={link.trimmed}")

    response = operator_client.post(f"/failures/{dump_group.pk}/upstream/", {"url": UPSTREAM})
    assert response.status_code == 302
    dump_group.refresh_from_db()
    assert (dump_group.upstream_url, dump_group.status) == (UPSTREAM, FailureGroup.Status.FILED)

    later = operate(operator_client, refreshed(on_host2), "stateful_snapshot", snapshot="again")
    assert group_of(later) == dump_group
    page = operator_client.get(f"/operations/{later.pk}/").content.decode()
    assert f'Already reported:</strong> <a href="{UPSTREAM}"' in page
    assert f"Already reported: {UPSTREAM}" in ready_bundle(later).report
    dump_group.refresh_from_db()
    assert dump_group.count == 3 and dump_group.hosts["host2"]["count"] == 2


def test_a_migration_whose_restore_fails_on_the_target_is_a_group_of_its_own(
    celery_worker, admin_client, counters, lab
):
    on_host1, on_host2 = counters
    set_criu(lab["hosts"][1], "stock")
    try:
        operation = check_then_migrate(admin_client, on_host1, on_host2.host, strategy="live")
    finally:
        kill_stuck_dumps(on_host1.name)  # LXD 5.0.2 leaves the source's dump waiting
    save_fixture("migrate-live-host1-host2", operation, "a live migration host1 -> host2 with "
                 "`lab.py criu host2 stock` (the target's restore fails)")  # fmt: skip
    assert operation.status == Operation.Status.FAILED
    group = group_of(operation)
    assert group.kind == "migrate" and group.component == "criu"
    assert group.signature["phase"] == "transferring"
    assert "migration restore failed" in group.signature["platform"]
    assert group.signature["versions"] == "lxd 5.0.2 -> lxd 5.0.2"
    assert sorted(group.hosts) == ["host1", "host2"]
    page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
    assert f'href="/failures/{group.pk}/"' in page and "the first of its cause" in page
