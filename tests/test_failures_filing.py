"""Filing a group upstream (panel/failures/filing.py): the right tracker, its own field names,
the report redacted and trimmed to fit a link, the bundle named for the rest. No network:
the links are built and read back."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from panel.bundles.report import ReportContext, render_report
from panel.failures.filing import MAX_URL_BYTES, TRACKERS, filings, new_issue_link
from panel.failures.grouping import group_failure
from panel.models import Bundle, FailureGroup
from panel.redaction import Redactor
from tests.helpers import make_host
from tests.test_failures_grouping import failed

pytestmark = pytest.mark.django_db
TOKEN = "eyJjbGllbnRfbmFtZSI6InBhbmVsIiwic2VjcmV0IjoiMTIzNDU2Nzg5MCJ9"  # {"secret": ...}


def fields(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def group_with_report(report: str, os_name: str = "Debian GNU/Linux 12") -> FailureGroup:
    host = make_host("host1", facts={"server": "lxd", "server_version": "5.0.2", "os": os_name})
    operation = failed("dump-host1", host)
    group = group_failure(operation.pk).group
    Bundle.objects.create(operation=operation, instance_name="c", status="ready", report=report)
    return group


def test_each_tracker_gets_its_own_new_issue_page_and_field_names():
    links = {
        t.key: new_issue_link(t, "A title", "A body", "the bundle").url for t in TRACKERS.values()
    }
    assert (
        links["lxd"] == "https://github.com/canonical/lxd/issues/new?title=A%20title&body=A%20body"
    )
    assert links["incus"].startswith(
        "https://github.com/lxc/incus/issues/new?title=A%20title&body="
    )
    assert links["criu"].startswith("https://github.com/checkpoint-restore/criu/issues/new?title=")
    assert links["ubuntu-criu"] == (
        "https://bugs.launchpad.net/ubuntu/+source/criu/+filebug"
        "?field.title=A%20title&field.comment=A%20body"
    )


def test_a_criu_failure_on_ubuntu_goes_to_ubuntus_criu_package_first():
    ubuntu = group_with_report("report", os_name="Ubuntu 22.04.4 LTS")
    assert [f.tracker.key for f in filings(ubuntu)] == ["ubuntu-criu", "criu", "lxd"]


def test_the_link_carries_the_report_redacted_and_names_the_versions_in_its_title(settings):
    settings.REDACT_PATTERNS = [r"corp-db-\d+"]
    report = render_report(
        ReportContext(title="LXD bug report: c", container="c", hosts=["host1"],
                      command="lxc snapshot c doomed --stateful",
                      error=f"snapshot dump failed\npassword=hunter2-secret token {TOKEN}"),
        [], Redactor(),
    ) + "\nhost corp-db-17 said so"  # fmt: skip
    link = filings(group_with_report(report))[0]
    sent = fields(link.url)
    assert sent["title"] == (
        "Stateful snapshot failed while checkpointing: vdso: Unexpected rt vDSO area bounds "
        "(LXD 5.0.2, CRIU 3.17.1)"
    )
    assert "lxc snapshot c doomed --stateful" in sent["body"] and "Seen 1 time(s)" in sent["body"]
    for secret in ("hunter2-secret", TOKEN, "corp-db-17"):
        assert secret not in link.url
    assert not link.trimmed


def test_a_report_too_long_for_a_link_keeps_its_head_and_names_the_bundle_to_attach():
    report = "## What was run\n\nlxc snapshot c doomed\n" + "\n".join(
        f"11:34:{n % 60:02d} [checkpointing] a long timeline line number {n}" for n in range(2000)
    )
    group = group_with_report(report)
    link = filings(group)[0]
    bundle = group.latest_bundle()
    assert link.trimmed and len(link.url) <= MAX_URL_BYTES
    assert len(link.url) > MAX_URL_BYTES - 200  # as much as fits, not a token amount
    assert "lxc snapshot c doomed" in fields(link.url)["body"]
    assert fields(link.url)["body"].endswith(
        f"report.md in the panel's bug bundle lxd-bundle-{bundle.pk}.tar.gz (please attach it).]"
    )


def test_one_endless_line_is_cut_inside_it_to_fit():
    link = new_issue_link(TRACKERS["lxd"], "t", "é" * 20_000, "the bundle")
    assert link.trimmed and MAX_URL_BYTES - 20 < len(link.url) <= MAX_URL_BYTES


def test_before_its_bundle_is_ready_the_link_carries_the_command_and_the_error():
    host = make_host("host1")
    restore = failed("restore-host1", host, params={"snapshot": "good", "stateful": True})
    group = group_failure(restore.pk).group
    body = fields(filings(group)[0].url)["body"]
    assert "lxc restore c good --stateful" in body and "snapshot restore failed" in body
    assert "the panel's bug bundle of this failure" not in body  # short enough: not trimmed
