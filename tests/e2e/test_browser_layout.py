"""In a real browser, without LXD (the pages read only the database): the container page's
tabs, the snapshot poll holding still while the user is in it, dark mode from the system
and from the toggle, a 390 px phone, and the task bar's toast on another page."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from panel.models import Operation
from panel.operations import lifecycle
from tests.conftest import wait_for
from tests.e2e.conftest import log_in, open_tab, screenshot
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
PHONE = {"width": 390, "height": 844}
COUNT_POLLS = """() => {
  window.polls = {asked: 0, sent: 0};
  document.addEventListener("htmx:beforeRequest", (e) => {
    if (e.detail.elt.id === "snapshots") window.polls.asked++; });
  document.addEventListener("htmx:beforeSwap", (e) => {
    if (e.detail.elt.id === "snapshots") window.polls.sent++; });
}"""


@pytest.fixture
def container(admin_user):
    instance = make_instance(make_host("lab-a"), "web1", ipv4="10.0.3.5 (eth0)")
    make_snapshot(instance, "nightly", stateful=True, created_at=timezone.now())
    return instance


def polls(page) -> dict:
    return page.evaluate("() => window.polls")


def test_the_snapshot_list_refreshes_but_holds_still_while_a_choice_is_pending(
    visit, admin_user, container
):
    page = visit
    log_in(page, admin_user)
    page.goto(f"/containers/{container.pk}/")
    open_tab(page, "Snapshots")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?tab=snapshots")
    page.evaluate(COUNT_POLLS)
    wait_for(lambda: polls(page)["sent"] >= 1, timeout=15, what="an idle refresh")

    mode = page.get_by_label("Restore mode for nightly")
    mode.select_option("filesystem")
    # Focus leaves; the choice stays.
    page.get_by_role("heading", name="Snapshots", exact=True).click()
    start = polls(page)
    wait_for(lambda: polls(page)["asked"] >= start["asked"] + 2, timeout=20, what="two polls")
    assert polls(page)["sent"] == start["sent"]  # both held back
    expect(mode).to_have_value("filesystem")
    expect(page.locator("#snapshots")).to_have_attribute("data-paused", "true")

    page.reload()  # a fresh page has no pending choice: the list refreshes again
    page.evaluate(COUNT_POLLS)
    wait_for(lambda: polls(page)["sent"] >= 1, timeout=15, what="a refresh after reload")
    expect(page.get_by_label("Restore mode for nightly")).to_have_value("stateful")


def test_dark_mode_follows_the_system_and_the_toggle_remembers_the_choice(
    browser, panel_url, admin_user, container
):
    context = browser.new_context(base_url=panel_url, color_scheme="dark", viewport=PHONE)
    page = context.new_page()
    try:
        log_in(page, admin_user)
        html = page.locator("html")
        expect(html).to_have_attribute("data-theme", "dark")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"
        page.goto(f"/containers/{container.pk}/")
        screenshot(page, "container-detail-dark-390px")
        page.get_by_role("button", name="Switch between light and dark").click()
        expect(html).to_have_attribute("data-theme", "light")
        page.reload()
        expect(html).to_have_attribute("data-theme", "light")
    finally:
        context.close()


def test_at_390_px_the_menu_folds_and_tables_scroll_inside_their_card(visit, admin_user, container):
    page = visit
    page.set_viewport_size(PHONE)
    log_in(page, admin_user)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Containers").click()
    expect(page.get_by_role("row").filter(has_text="web1")).to_contain_text("10.0.3.5 (eth0)")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    table = page.locator("table.grid")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # it scrolls, the page not
    screenshot(page, "containers-390px")


def test_an_operation_that_ends_is_toasted_on_another_page(visit, admin_user, container):
    page = visit
    log_in(page, admin_user)
    expect(page.locator("#taskbar")).to_contain_text("0 running, 0 failed in the last hour")
    operation = lifecycle.request(container, "stateful_snapshot", admin_user, params={})
    page.goto("/hosts/")
    expect(page.locator("#taskbar")).to_contain_text("1 running")
    Operation.objects.filter(pk=operation.pk).update(
        status="failed", outcome="Checkpoint failed; web1 is still running.",
        finished_at=timezone.now(),
    )  # fmt: skip
    toast = page.locator(".toast")
    expect(toast).to_contain_text(f"#{operation.pk} Stateful snapshot · web1", timeout=10_000)
    expect(toast).to_contain_text("Checkpoint failed; web1 is still running.")
    expect(page.locator("#taskbar")).to_contain_text("1 failed in the last hour")
    screenshot(page, "toast")
    toast.get_by_role("button", name="Dismiss").click()
    expect(toast).to_have_count(0)
    page.goto("/containers/")  # the next page's catch-up does not show it twice
    page.wait_for_timeout(6_000)
    expect(page.locator(".toast")).to_have_count(0)


def test_a_running_migration_shows_its_phases_a_moving_bar_and_the_transfer_rate(
    visit, admin_user, container
):
    from panel.operations.runner import Tracker

    page = visit
    target = make_host("lab-b")
    operation = lifecycle.request(container, "migrate", admin_user, target_host=target,
                                  params={"strategy": "stateful_move"})  # fmt: skip
    assert lifecycle.claim(operation.pk).verdict == lifecycle.CLAIMED
    operation.refresh_from_db()
    tracker = Tracker(operation)
    tracker.enter("checkpointing", "Stateful stop of web1 on lab-a.")
    tracker.enter("transferring", "Moving web1 to lab-b (stopped).")
    lifecycle.record_progress(operation, "web1: 120.00MB (15.00MB/s)", fraction=2 / 6)
    log_in(page, admin_user)
    page.goto(f"/operations/{operation.pk}/")
    card = page.locator("section.progress-card")
    steps = card.locator(".stepper li")
    expect(steps).to_have_text(
        ["done: check", "done: checkpoint", "current: transfer", "upcoming: restore",
         "upcoming: verify", "upcoming: clean up"]
    )  # fmt: skip
    expect(card.locator("progress")).to_have_attribute("value", "0.333")
    expect(card.locator(".transfer")).to_have_text("Transferred: 120.0 MB at 15.0 MB/s")
    screenshot(page, "operation-in-progress")
    tracker.enter("restoring", "Starting web1 on lab-b from its saved state.")
    expect(card.locator("progress")).to_have_attribute("value", "0.500")  # the bar moves
    expect(card.locator(".stepper li[aria-current=step]")).to_have_text("current: restore")


def test_every_kind_of_page_runs_under_the_policy_without_a_violation(visit, admin_user, container):
    """The visit fixture fails the test on any script error or blocked resource."""
    page = visit
    log_in(page, admin_user)
    for path in ["/", "/hosts/", "/containers/?sort=-snapshots", "/operations/", "/bundles/",
                 "/tokens/", "/notifications/", "/failures/", "/audit/", "/api/docs/", "/admin/",
                 "/admin/panel/host/", f"/admin/panel/host/{container.host_id}/change/",
                 f"/containers/{container.pk}/?tab=config"]:  # fmt: skip
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
