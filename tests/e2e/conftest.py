"""End-to-end fixtures: the panel served for real by gunicorn on the test database, and
Debian's Chromium driven by Playwright (no browser download: `apt-get install chromium`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, wait_for

CHROMIUM = os.environ.get("PANEL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
ENDED = re.compile(r"^(Succeeded|Failed|Cancelled|Interrupted)$")
PASSWORD = "s3cret-pass-word"  # the admin_user persona's, from tests/conftest.py


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's `chromium` (bin/test does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # refuse ORM calls from the test ("async context"); the tests themselves are synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Visit:
    """What the browser saw besides the pages: confirmation dialogs, foreign requests, and
    anything the Content-Security-Policy blocked or a script threw."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.foreign_requests: list[str] = []
        self.script_errors: list[str] = []


@pytest.fixture
def visit(browser, panel_url):
    """A fresh browser context per test; every confirm() is recorded and accepted, and every
    request that leaves the panel's origin is recorded (the panel serves all its assets)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, base_url=panel_url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    seen = Visit()

    def on_dialog(dialog) -> None:
        seen.dialogs.append(dialog.message)
        dialog.accept()

    def on_request(request) -> None:
        if urlsplit(request.url).netloc != urlsplit(panel_url).netloc:
            seen.foreign_requests.append(request.url)

    def on_console(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            seen.script_errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.script_errors.append(str(error)))
    page.seen = seen
    try:
        yield page
    finally:
        context.close()
    assert not seen.foreign_requests, f"assets from outside the panel: {seen.foreign_requests}"
    assert not seen.script_errors, f"blocked or failing scripts: {seen.script_errors}"


def open_tab(page, label: str) -> None:
    """One of the container page's sections, by its tab."""
    from playwright.sync_api import expect

    tabs = page.get_by_role("navigation", name="Container sections")
    tabs.get_by_role("link", name=label, exact=True).click()
    expect(tabs.get_by_role("link", name=label, exact=True)).to_have_attribute(
        "aria-current", "page"
    )


def screenshot(page, name: str) -> None:
    """Save docs/screenshots/<name>.png (the README shows some of them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def unlabelled_controls(page) -> list[str]:
    """Visible form controls that a screen reader would announce without a name."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby') && !el.title)
            .map(el => el.outerHTML.slice(0, 120))"""
    )


def log_in(page, user) -> None:
    """Through the real login form, as a person does."""
    from playwright.sync_api import expect

    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    expect(page.locator(".who")).to_have_text(user.username)


def reload_until(page, locator, timeout: float = 30) -> None:
    """Reload until `locator` shows: for what the page does not poll for by itself."""

    def shown() -> bool:
        if locator.is_visible():
            return True
        page.reload()
        return False

    wait_for(shown, timeout=timeout, interval=1, what=f"{locator} to show on {page.url}")


def follow_operation(page, status: str = "Succeeded", timeout: float = 180) -> tuple:
    """On an operation's page: the progress card is live until it ends with `status`.
    Returns the card and whether a progress bar was seen while it ran."""
    from playwright.sync_api import expect

    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    card = page.locator("section.progress-card")
    expect(card).to_contain_text("Elapsed:")
    saw_progress = card.locator("progress").is_visible()
    badge = card.locator(".page-head .badge")
    expect(badge).to_have_text(ENDED, timeout=timeout * 1000)
    outcome = card.locator(".outcome")
    error = card.locator("pre.log")
    assert badge.inner_text() == status, (
        f"{badge.inner_text()}: {outcome.all_inner_texts()} {error.all_inner_texts()}"
    )
    expect(card.locator("progress")).to_have_count(0)
    return card, saw_progress
