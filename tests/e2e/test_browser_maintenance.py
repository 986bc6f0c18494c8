"""In a real browser: put host1 in maintenance mode, plan its evacuation, leave the lab's
other containers out and check the plan again, confirm it, and watch every container move."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from panel.hosts.inventory import sync
from panel.models import Instance
from tests.e2e.conftest import log_in, screenshot, unlabelled_controls
from tests.lab_tools import enroll, instance_status, read_boot_id, running_counters

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(400),
]


def test_an_admin_evacuates_a_host_after_reading_its_plan(lab, celery_worker, visit, admin_user):
    page, (source, target) = visit, lab["hosts"][:2]
    host1, _ = enroll(source), enroll(target)
    with running_counters(lab, source, "e2e-evac", 2) as names:
        boots = {name: read_boot_id(source, name) for name in names}
        sync(host1)
        others = Instance.objects.present().filter(host=host1).exclude(name__in=names)

        log_in(page, admin_user)
        page.goto(f"/hosts/{host1.pk}/")
        card = page.locator("#maintenance")
        card.get_by_label("Why").fill("new disks")
        card.get_by_role("button", name="Set maintenance mode").click()
        expect(card).to_contain_text("In maintenance mode")
        expect(card).to_contain_text("new disks")

        page.locator("#maintenance").get_by_role("button", name="Plan an evacuation").click()
        expect(page.get_by_role("heading", name="Evacuate to other hosts: host1")).to_be_visible()
        plan = page.locator("#plan")
        expect(plan).to_be_visible(timeout=60_000)  # drawn up by the worker; the page reloads
        for other in others:
            plan.get_by_role("row").filter(has_text=other.name).get_by_role("checkbox").check()
        plan.get_by_role("button", name="Check again with these choices").click()
        plan = page.locator("#plan")
        expect(plan).to_be_visible(timeout=60_000)
        for name in names:
            row = plan.get_by_role("row").filter(has_text=name)
            expect(row).to_contain_text(f"moves to {target['name']}")
        for other in others:
            expect(plan.get_by_role("row").filter(has_text=other.name)).to_contain_text(
                "skipped by the admin's choice"
            )
        assert unlabelled_controls(page) == []
        screenshot(page, "maintenance-plan")

        # The panel's script asks this before the form is sent (data-confirm).
        expect(plan.locator("form[data-confirm]")).to_have_attribute(
            "data-confirm", re.compile(r"^Evacuate to other hosts host1: .* Start now\?$")
        )
        plan.get_by_role("button", name="Confirm and start").click()
        expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
        children = page.locator("#children")
        expect(children.get_by_role("row")).to_have_count(len(names) + others.count() + 1)
        badge = page.locator("section.progress-card .page-head .badge")
        expect(badge).to_have_text(re.compile("^(Succeeded|Failed|Cancelled)$"), timeout=180_000)
        assert badge.inner_text() == "Succeeded", page.locator(".outcome").inner_text()
        page.reload()
        for name in names:
            expect(
                page.locator("#children").get_by_role("row").filter(has_text=name)
            ).to_contain_text(f"on {target['name']}, RUNNING")
        screenshot(page, "maintenance-result")

        for name in names:
            assert instance_status(target, name) == "Running"
            assert read_boot_id(target, name) == boots[name]
        page.goto(f"/hosts/{host1.pk}/")
        page.locator("#maintenance").get_by_role("button", name="Clear maintenance mode").click()
        expect(page.locator("#maintenance")).not_to_contain_text("In maintenance mode")
