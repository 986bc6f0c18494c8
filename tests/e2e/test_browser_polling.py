"""In a real browser: the snapshot list refreshes every 5 s, yet a restore mode the user
chose, or the control they are on, survives the refreshes, and the confirm names the mode
that then runs, as LXD shows it ran."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel.hosts.inventory import sync
from tests.conftest import wait_for
from tests.e2e.conftest import follow_operation, log_in, open_tab
from tests.lab_tools import enroll, lxc, read_boot_id, running_counter

pytestmark = [
    pytest.mark.lab,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]
POLLS = """() => {
  window.snapshotPolls = {asked: 0, swapped: 0};
  document.addEventListener("htmx:beforeRequest", (e) => {
    if (e.detail.elt.id === "snapshots") window.snapshotPolls.asked++; });
  document.addEventListener("htmx:beforeSwap", (e) => {
    if (e.detail.elt.id === "snapshots") window.snapshotPolls.swapped++; });
}"""


@pytest.fixture
def counter(lab):
    with running_counter(lab, lab["hosts"][0], "e2e-poll") as name:
        yield name


def polls(page) -> dict:
    return page.evaluate("() => window.snapshotPolls")


def wait_through_two_refreshes(page) -> None:
    """Two polls of the snapshot list asked for (each 5 s apart) since now."""
    start = polls(page)["asked"]
    wait_for(lambda: polls(page)["asked"] >= start + 2, timeout=20, what="two snapshot polls")


def test_a_chosen_restore_mode_survives_two_refreshes_and_is_the_one_that_runs(
    lab, celery_worker, visit, admin_user, counter
):
    page, lab_host = visit, lab["hosts"][0]
    host = enroll(lab_host)
    lxc(lab_host, "snapshot", counter, "nightly", "--stateful")
    sync(host)
    boot_at_snapshot = read_boot_id(lab_host, counter)

    log_in(page, admin_user)
    page.goto("/containers/")
    page.get_by_role("link", name=counter).click()
    open_tab(page, "Snapshots")
    page.evaluate(POLLS)
    mode = page.get_by_label("Restore mode for nightly")
    # Left alone, the list does refresh (and would have reset a choice before).
    wait_for(lambda: polls(page)["swapped"] >= 1, timeout=15, what="an idle refresh")

    # 1. Running state + filesystem, the control kept focused through two refreshes.
    mode.focus()
    mode.select_option("stateful")
    wait_through_two_refreshes(page)
    expect(mode).to_be_focused()
    expect(mode).to_have_value("stateful")
    page.get_by_role("row").filter(has_text="nightly").get_by_role("button", name="Restore").click()
    asked = page.seen.dialogs[-1]
    assert asked.startswith(
        f"Restore snapshot nightly of {counter}, running state + filesystem: it goes back to "
        "the processes and files it had at "
    )
    assert asked.endswith(", running. Changes since then are lost.")
    card, _ = follow_operation(page)
    expect(card.locator(".outcome")).to_contain_text(
        "Restored 'nightly' (running state and filesystem); the container is RUNNING."
    )
    assert read_boot_id(lab_host, counter) == boot_at_snapshot  # the same processes

    # 2. Filesystem only, chosen then left (focus elsewhere): the choice alone holds the list.
    page.get_by_role("link", name=f"← {counter}").click()
    open_tab(page, "Snapshots")
    page.evaluate(POLLS)
    mode = page.get_by_label("Restore mode for nightly")
    mode.select_option("filesystem")
    page.get_by_role("heading", name="Snapshots", exact=True).click()
    expect(mode).not_to_be_focused()
    wait_through_two_refreshes(page)
    assert polls(page)["swapped"] == 0
    expect(mode).to_have_value("filesystem")
    page.get_by_role("row").filter(has_text="nightly").get_by_role("button", name="Restore").click()
    assert page.seen.dialogs[-1].startswith(
        f"Restore snapshot nightly of {counter}, filesystem only: the running processes are "
        "stopped, the files go back to "
    )
    card, _ = follow_operation(page)
    expect(card.locator(".outcome")).to_contain_text("Restored 'nightly' (filesystem only)")
    assert read_boot_id(lab_host, counter) != boot_at_snapshot  # booted afresh
