"""In a real browser: a stateful snapshot fails on a host with Debian's stock CRIU; its group is
on the failures page; the team files it (the pre-filled link), records the upstream bug and a
workaround; the next failure of the same cause says "already reported" with both."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import follow_operation, log_in, screenshot, unlabelled_controls
from tests.lab_tools import enroll, running_counter, set_criu

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]
UPSTREAM = "https://github.com/checkpoint-restore/criu/issues/2001"
NOTE = "Debian 12's CRIU 3.17.1 cannot dump on kernels with [vvar_vclock]: use CRIU 4.x."


@pytest.fixture
def counter_on_stock_criu(without_agents):
    """No agents: once an agent's `criu check` fails, the panel (rightly) offers no
    checkpoint, and this test needs CRIU's own failure twice."""
    lab = without_agents
    lab_host = lab["hosts"][0]
    with running_counter(lab, lab_host, "e2e-grp") as name:
        set_criu(lab_host, "stock")
        yield lab_host, name


def fail_a_checkpoint(page, name: str, snapshot: str):
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Containers").click()
    page.get_by_role("link", name=name).click()
    form = page.locator("form.action").filter(
        has=page.get_by_role("button", name="Stateful snapshot")
    )
    form.get_by_label("Snapshot name").fill(snapshot)
    form.get_by_role("button", name="Stateful snapshot").click()
    card, _ = follow_operation(page, status="Failed")
    return card


def test_the_failures_page_groups_files_and_marks_later_failures_already_reported(
    celery_worker, visit, admin_user, counter_on_stock_criu
):
    page, (lab_host, name) = visit, counter_on_stock_criu
    enroll(lab_host)
    log_in(page, admin_user)
    fail_a_checkpoint(page, name, "doomed")
    group_card = page.locator("#failure-group")
    expect(group_card).to_contain_text("the first of its cause", timeout=10_000)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Failures").click()
    expect(page.get_by_role("heading", name="Failures")).to_be_visible()
    row = page.locator("#failure-groups tbody tr").filter(has_text="vdso: Unexpected rt vDSO")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("host1")
    expect(row).to_contain_text("LXD 5.0.2")
    expect(row.locator(".badge")).to_have_text("New")
    assert unlabelled_controls(page) == []
    screenshot(page, "failures")

    row.get_by_role("link", name=re.compile("Stateful snapshot failed while checkpointing")).click()
    filing = page.locator("#trackers").get_by_role("link").first
    expect(filing).to_have_text("File on CRIU (checkpoint-restore/criu on GitHub)")
    href = filing.get_attribute("href") or ""
    assert href.startswith("https://github.com/checkpoint-restore/criu/issues/new?title=")
    body = parse_qs(urlsplit(href).query)["body"][0]
    assert "vdso: Unexpected rt vDSO area bounds" in body and len(href) <= 8000
    page.get_by_label("Upstream bug URL").fill(UPSTREAM)
    page.get_by_role("button", name="Save the upstream bug").click()
    expect(page.locator("#upstream")).to_contain_text(f"Already reported: {UPSTREAM}")
    expect(page.locator("#group .badge")).to_have_text("Filed upstream")
    page.get_by_label("Team note").fill(NOTE)
    page.get_by_role("button", name="Save the note").click()
    expect(page.locator("#note")).to_contain_text(NOTE)
    assert unlabelled_controls(page) == []
    screenshot(page, "failure-group")

    fail_a_checkpoint(page, name, "again")
    expect(group_card).to_contain_text(f"Already reported: {UPSTREAM}", timeout=10_000)
    expect(group_card).to_contain_text(NOTE)
    expect(group_card.get_by_role("link", name=UPSTREAM)).to_have_attribute("href", UPSTREAM)

    page.goto("/failures/?status=new")
    expect(page.locator("#failure-groups")).to_contain_text("No failures match these filters")
    page.get_by_label("Status").select_option("filed")
    page.get_by_role("button", name="Filter").click()
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text("2")
