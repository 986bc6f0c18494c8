"""In a real browser: migrate the counter container to the other lab host, reading the
pre-flight list before confirming, and see the downtime drawn as a timeline."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    VIEWPORT,
    follow_operation,
    log_in,
    screenshot,
    unlabelled_controls,
)
from tests.lab_tools import (
    enroll,
    instance_status,
    read_boot_id,
    running_counter,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(400),
]


@pytest.fixture
def counter(lab):
    """A running counter container on host1; removed from both hosts afterwards."""
    with running_counter(lab, lab["hosts"][0], "e2e-mig") as name:
        yield name


def test_a_container_migrates_to_the_other_host_after_the_preflight_list_is_shown(
    lab, celery_worker, visit, admin_user, counter
):
    page, (source, target) = visit, lab["hosts"][:2]
    enroll(source), enroll(target)
    boot = read_boot_id(source, counter)

    log_in(page, admin_user)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Containers").click()
    page.get_by_role("link", name=counter).click()
    expect(page.get_by_role("heading", name=f"{counter} on {source['name']}")).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the menu folds
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "container-detail-390px")
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.set_viewport_size(VIEWPORT)

    card = page.locator("#migrate")
    expect(card.get_by_role("heading", name="Migrate to another host")).to_be_visible()
    card.get_by_label("Target host").select_option(label=target["name"])
    card.get_by_role("button", name="Check before migrating").click()

    card, _ = follow_operation(page)
    expect(card.get_by_role("heading")).to_contain_text("Migration pre-flight")
    checks = page.locator("table.checks")
    expect(
        page.get_by_role("heading", name=f"Pre-flight: {source['name']} → {target['name']}")
    ).to_be_visible()
    expect(checks.get_by_role("row").filter(has_text="The name")).to_contain_text("PASS")
    expect(checks.locator("tbody tr")).not_to_have_count(0)
    expect(checks.locator(".badge.check-fail")).to_have_count(0)
    confirm = page.locator("#confirm")
    expect(confirm.get_by_role("heading")).to_have_text(f"Migrate {counter} to {target['name']}")
    expect(confirm.get_by_role("radio", name=re.compile("^Recommended"))).to_be_checked()
    assert unlabelled_controls(page) == []
    screenshot(page, "migration-preflight")

    confirm.get_by_role("button", name="Migrate", exact=True).click()
    assert page.seen.dialogs[-1].startswith(f"Migrate {counter} to {target['name']} by ")
    assert (
        f"the copy on {source['name']} is deleted once the target is verified"
        in (page.seen.dialogs[-1])
    )
    card, _ = follow_operation(page, timeout=300)
    expect(card.locator(".outcome")).to_contain_text(target["name"])
    timing = page.locator("section").filter(
        has=page.get_by_role("heading", name="Where the time went")
    )
    expect(timing).to_contain_text(re.compile(r"Downtime: \d+\.\d\d s"))
    bar = timing.get_by_role("img", name=re.compile("Migration phases"))
    expect(bar).to_be_visible()
    assert bar.locator(".phase").count() >= 2
    expect(timing.locator(".phase-legend li").first).to_contain_text(" s → ")
    screenshot(page, "migration-result")

    assert instance_status(target, counter) == "Running"
    assert instance_status(source, counter) is None
    assert read_boot_id(target, counter) == boot  # the same processes, not a reboot
