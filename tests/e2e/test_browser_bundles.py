"""In a real browser: a stateful snapshot fails on a host with Debian's stock CRIU, the page
says the container is still running, and the failure's bundle downloads as a tarball."""

from __future__ import annotations

import re
import tarfile

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import follow_operation, log_in, reload_until, screenshot
from tests.lab_tools import (
    enroll,
    instance_status,
    running_counter,
    set_criu,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


@pytest.fixture
def counter_on_stock_criu(lab_agents):
    """A running counter container on host1, whose CRIU is Debian's stock one until the end."""
    lab_host = lab_agents["hosts"][0]
    with running_counter(lab_agents, lab_host, "e2e-fail") as name:
        set_criu(lab_host, "stock")
        yield lab_host, name


def test_a_failed_checkpoint_says_the_container_runs_and_its_bundle_downloads(
    celery_worker, visit, admin_user, counter_on_stock_criu, tmp_path
):
    page, (lab_host, name) = visit, counter_on_stock_criu
    enroll(lab_host)

    log_in(page, admin_user)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Containers").click()
    page.get_by_role("link", name=name).click()
    stateful = page.locator("form.action").filter(
        has=page.get_by_role("button", name="Stateful snapshot")
    )
    stateful.get_by_label("Snapshot name").fill("doomed")
    stateful.get_by_role("button", name="Stateful snapshot").click()

    card, _ = follow_operation(page, status="Failed")
    expect(card.locator(".outcome")).to_contain_text(
        "Checkpoint failed. The container is still running"
    )
    expect(card.get_by_text("The error as LXD gave it")).to_be_visible()
    expect(card.locator("pre.log")).to_contain_text("Error (criu/")
    assert instance_status(lab_host, name) == "Running"

    bundles = page.locator("#bundles")
    ready = bundles.get_by_role("listitem").filter(has_text=re.compile(r"Bundle #\d+ · Ready"))
    reload_until(page, ready, timeout=90)
    expect(ready).to_contain_text("(made automatically)")
    screenshot(page, "operation-failed")

    ready.get_by_role("link").click()
    expect(page.locator("#bundle-status .badge")).to_have_text("Ready")
    expect(page.locator("#report-text")).to_contain_text(name)
    manifest = page.locator("table.grid").filter(has_text="Item")
    expect(manifest.get_by_role("row")).not_to_have_count(0)
    screenshot(page, "bundle")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download .tar.gz").click()
    download = download_info.value
    assert download.suggested_filename.endswith(f"-{name}.tar.gz")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with tarfile.open(path, "r:gz") as tarball:
        members = {member.rsplit("/", 1)[-1] for member in tarball.getnames()}
    assert {"report.md", "manifest.json"} <= members
