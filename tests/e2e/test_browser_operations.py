"""In a real browser: log in, add a lab host after comparing its fingerprint, find the counter
container, then snapshot it statefully, restore it, stop it statefully and start it again."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    follow_operation,
    log_in,
    open_tab,
    reload_until,
    screenshot,
    unlabelled_controls,
)
from tests.lab_tools import (
    instance_status,
    read_boot_id,
    running_counter,
    server_fingerprint,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


@pytest.fixture
def counter(lab):
    """A running counter container on host1, not yet known to the panel; deleted afterwards."""
    with running_counter(lab, lab["hosts"][0], "e2e") as name:
        yield name


def add_host(page, lab_host: dict) -> None:
    """The add form, then the enroll page: compare the fingerprint, give the password."""
    page.get_by_role("link", name="Add a host").first.click()
    expect(page.get_by_role("heading", name="Add a host")).to_be_visible()
    assert unlabelled_controls(page) == []
    page.get_by_label("Name").fill(lab_host["name"])
    page.get_by_label("Endpoint").fill(lab_host["url"])
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name=f"Adding {lab_host['name']}")).to_be_visible()
    fingerprint = page.locator(".fingerprint code")
    expect(fingerprint).to_have_text(server_fingerprint(lab_host), timeout=30_000)
    expect(page.locator("#enrollment")).to_contain_text(
        "Step: Waiting for you to confirm the fingerprint"
    )
    screenshot(page, "enroll-fingerprint")
    page.get_by_label("Trust password or token").fill(lab_host["trust_password"])
    page.get_by_role("button", name="The fingerprint matches: trust and add").click()

    expect(page.get_by_role("heading", name=lab_host["name"], exact=True)).to_be_visible(
        timeout=60_000
    )
    expect(page.locator("#host-facts .badge.online")).to_have_text("Online", timeout=30_000)
    expect(page.get_by_text(f"Pinned certificate: {server_fingerprint(lab_host)}")).to_be_visible()


def test_an_admin_adds_a_host_and_checkpoints_restores_stops_and_starts_a_container(
    lab, celery_worker, visit, admin_user, untrusted_panel, counter
):
    page, lab_host = visit, lab["hosts"][0]
    boot = read_boot_id(lab_host, counter)

    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")
    log_in(page, admin_user)
    page.keyboard.press("Tab")  # the first stop is the skip link, and focus is drawn
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.evaluate("link => getComputedStyle(link).outlineStyle") != "none"
    add_host(page, lab_host)

    for label in ("Stateful snapshots", "Stateful stop", "Live migration"):
        capability = page.locator("ul.capabilities li").filter(has_text=label)
        expect(capability.locator(".badge")).to_have_text(re.compile(rf"^{label}: (yes|unknown)$"))
        # "unknown: no agent" until the host's agent answers its first probe (sent right
        # after the host is trusted); then `criu check` decides.
        expect(capability.locator(".reason")).to_contain_text(
            re.compile(r"LXD 5\.0\.2 supports it|`criu check` passes")
        )
    page.get_by_role("button", name="Sync now").click()
    containers = page.locator("#host-facts").get_by_role("link", name=counter)
    reload_until(page, containers)
    screenshot(page, "host-detail")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    fleet = page.locator("#host-table").get_by_role("row").filter(has_text=lab_host["name"])
    expect(fleet).to_contain_text("Online")
    expect(fleet).to_contain_text(re.compile(r"Stateful snapshots: (yes|unknown)"))
    screenshot(page, "dashboard")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Containers").click()
    page.get_by_label("Name").press_sequentially(counter)  # filters as you type
    row = page.get_by_role("row").filter(has_text=counter)
    expect(row).to_contain_text("RUNNING")
    expect(page.locator(".count")).to_have_text("1 container")
    screenshot(page, "containers")
    row.get_by_role("link", name=counter).click()

    expect(page.get_by_role("heading", name=f"{counter} on {lab_host['name']}")).to_be_visible()
    expect(page.locator("#instance-info .badge").first).to_have_text("RUNNING")
    expect(page.locator(".checkpoint-check .badge")).to_have_text(
        re.compile(rf"Checkpoint/restore on {lab_host['name']}: (yes|unknown)")
    )
    expect(page.get_by_role("heading", name="Checkpoint risk assessment")).to_be_visible()
    expect(page.get_by_text("No known risk")).to_be_visible()
    assert unlabelled_controls(page) == []
    screenshot(page, "container-detail")

    stateful = page.locator("form.action").filter(
        has=page.get_by_role("button", name="Stateful snapshot")
    )
    stateful.get_by_label("Snapshot name").fill("e2e-snap")
    stateful.get_by_role("button", name="Stateful snapshot").click()
    expect(page.locator("section.progress-card h2")).to_contain_text("Stateful snapshot")
    card, saw_progress = follow_operation(page)
    assert saw_progress, "the operation ended before its page showed a progress bar"
    expect(card.locator(".outcome")).to_contain_text("Stateful snapshot 'e2e-snap' taken")
    expect(page.locator("ol.timeline")).to_contain_text("checkpointing")
    screenshot(page, "operation-succeeded")

    page.get_by_role("link", name=f"← {counter}").click()
    open_tab(page, "Snapshots")
    snapshot_row = page.locator("#snapshots").get_by_role("row").filter(has_text="e2e-snap")
    reload_until(page, snapshot_row)
    expect(snapshot_row).to_contain_text("YES")
    snapshot_row.get_by_label("Restore mode for e2e-snap").select_option("stateful")
    snapshot_row.get_by_role("button", name="Restore").click()
    assert page.seen.dialogs[-1].startswith(
        "Restore snapshot e2e-snap of " + counter + ", running state + filesystem:"
    )
    card, _ = follow_operation(page)
    expect(card.locator(".outcome")).to_contain_text(
        "Restored 'e2e-snap' (running state and filesystem); the container is RUNNING."
    )
    assert read_boot_id(lab_host, counter) == boot  # restored, not rebooted

    page.get_by_role("link", name=f"← {counter}").click()
    page.get_by_role("button", name="Stateful stop").click()
    card, _ = follow_operation(page)
    expect(card.locator(".outcome")).to_contain_text("Stopped with its state saved")
    assert instance_status(lab_host, counter) == "Stopped"

    page.get_by_role("link", name=f"← {counter}").click()
    start = page.get_by_role("button", name="Start (restores the saved state)")
    reload_until(page, start)
    expect(page.locator("#instance-info .badge").first).to_have_text("STOPPED")
    expect(page.locator("#instance-info")).to_contain_text("yes: starting it restores")
    start.click()
    card, _ = follow_operation(page)
    expect(card.locator(".outcome")).to_contain_text("restored from its saved state")
    assert instance_status(lab_host, counter) == "Running"
    assert read_boot_id(lab_host, counter) == boot
