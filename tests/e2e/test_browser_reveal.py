"""In a real browser: a container's secret config values show redacted; an administrator's
click reveals one in place (htmx), and the audit trail names the key, never the value."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel.models import AuditEvent
from tests.e2e.conftest import log_in
from tests.helpers import make_host, make_instance

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_an_administrator_reveals_one_value_in_place_and_it_is_audited(visit, admin_user):
    instance = make_instance(
        make_host(), "c1", expanded_config={"user.db_password": "db-pw-in-browser-71",
                                            "limits.cpu": "2"}
    )  # fmt: skip
    page = visit
    log_in(page, admin_user)
    page.goto(f"/containers/{instance.pk}/?tab=config")  # the Configuration tab
    config = page.locator("pre.config")
    expect(config).to_contain_text("user.db_password: '[REDACTED]'")
    expect(page.locator("body")).not_to_contain_text("db-pw-in-browser-71")
    page.get_by_role("button", name="Reveal").click()
    expect(page.locator("output#revealed-1")).to_have_text("db-pw-in-browser-71")
    assert page.url.endswith(f"/containers/{instance.pk}/?tab=config")  # in place
    event = AuditEvent.objects.get(action="instance-config-reveal")
    assert event.username == admin_user.username and "user.db_password" in event.detail
    assert "db-pw-in-browser-71" not in event.detail
