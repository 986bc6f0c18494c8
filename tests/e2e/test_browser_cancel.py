"""In a real browser: the Cancel button of a polled progress card, which carries no CSRF
token of its own (htmx sends the page's as a header), ends a queued operation, and the
whole operation page follows with what happened."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel.models import Operation
from tests.conftest import wait_for
from tests.e2e.conftest import log_in
from tests.helpers import make_host, make_instance

COUNT_POLLS = """() => {
  window.cardPolls = 0;
  document.addEventListener("htmx:afterRequest", (e) => {
    const path = e.detail.requestConfig.path;
    if (e.detail.successful && path.endsWith("/progress/")) window.cardPolls++; });
}"""
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_cancel_on_the_polled_card_ends_a_queued_operation(visit, admin_user):
    instance = make_instance(make_host("lab-a"), "web1")
    operation = Operation.objects.create(
        kind="stateful_snapshot", instance=instance, instance_name=instance.name,
        source_host=instance.host, status="pending", params={"name": "s1"},
    )  # fmt: skip
    page = visit
    log_in(page, admin_user)
    page.goto(f"/operations/{operation.pk}/")
    card = page.locator(f"#operation-{operation.pk}")
    page.evaluate(COUNT_POLLS)
    wait_for(lambda: page.evaluate("() => window.cardPolls") >= 1, timeout=10, what="a poll")
    # The card the poll gave holds no token of its own.
    expect(card.locator('input[name="csrfmiddlewaretoken"]')).to_have_count(0)

    card.get_by_role("button", name="Cancel").click()
    expect(page.locator(".messages")).to_contain_text(
        "Cancelled before it started; nothing was done."
    )
    expect(card.locator(".page-head .badge")).to_have_text("Cancelled")
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    operation.refresh_from_db()
    assert operation.status == Operation.Status.CANCELLED
