"""Notifications of failures, delivered for real: a local SMTP server (aiosmtpd) receives the
mail, a local HTTP server the signed webhook, through a real Celery worker; the webhook's
first delivery is refused and the retry lands."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.test import override_settings

from panel.bundles.models import Bundle
from panel.failures import grouping
from panel.models import NotificationChoice, Operation
from panel.notify.addresses import refusal_on_save, refusal_on_send
from panel.notify.send import recipients
from panel.operations import lifecycle
from tests.conftest import doomed_worker, free_port, wait_for
from tests.helpers import make_host, make_instance

# Only the tests with a worker commit: elsewhere the jobs an operation's end sends on commit
# would reach the session worker and race the test for its rows.
pytestmark = pytest.mark.django_db


class Inbox:
    """aiosmtpd's handler: every message it is given."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_sink(monkeypatch):
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("PANEL_EMAIL_HOST", "127.0.0.1")
    monkeypatch.setenv("PANEL_EMAIL_PORT", str(port))
    monkeypatch.setenv("PANEL_PUBLIC_URL", "https://panel.example.org")
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def receiver():
    """An HTTP server that refuses the first POST (500) and takes the next ones."""
    seen: list[tuple[dict, bytes, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 500 if not seen else 204
            seen.append((dict(self.headers), body, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()


def fail(operation: Operation) -> None:
    """End an operation as its worker does when LXD reports a failure."""
    assert lifecycle.claim(operation.pk).verdict == lifecycle.CLAIMED
    operation.refresh_from_db()
    lifecycle.finish(
        operation, Operation.Status.FAILED,
        "Checkpoint failed; the container is still running on h1.",
        error="snapshot dump failed", state_after="on h1, RUNNING",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_failed_operation_is_mailed_and_posted_signed_with_its_links(
    celery_worker, operator_user, admin_user, smtp_sink, receiver, monkeypatch
):
    url, seen = receiver
    monkeypatch.setenv("PANEL_WEBHOOK_LOCAL_ADDRESSES", "true")  # the receiver is on 127.0.0.1
    operator_user.email = "otto@example.org"
    operator_user.save()
    choice = NotificationChoice.objects.create(user=operator_user, email=True, webhook_url=url)
    NotificationChoice.objects.create(user=admin_user, email=True, mine=True)  # not theirs
    instance = make_instance(make_host("h1"), "web1")
    with doomed_worker("notify"):  # a worker that reads this test's SMTP and URL settings
        operation = lifecycle.request(instance, "stateful_snapshot", operator_user, params={})
        fail(operation)
        wait_for(lambda: smtp_sink.messages, timeout=90, what="the mail")
        wait_for(lambda: len(seen) >= 2, timeout=90, what="the webhook's retry")

    (to, mail), = smtp_sink.messages  # fmt: skip
    assert to == ["otto@example.org"]
    assert mail["Subject"] == "[LXD panel] stateful_snapshot of web1 on h1 failed"
    text = mail.get_payload()
    assert "Checkpoint failed; the container is still running on h1." in text
    assert "snapshot dump failed" in text
    assert f"https://panel.example.org/operations/{operation.pk}/" in text
    bundle = operation.bundles.get()
    assert f"https://panel.example.org/bundles/{bundle.pk}/" in text

    assert [status for _, _, status in seen] == [500, 204]
    headers, body, _ = seen[-1]
    expected = hmac.new(choice.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Panel-Signature"] == f"sha256={expected}"
    notice = json.loads(body)
    assert notice["event"] == "operation.failed" and notice["container"] == "web1"
    assert notice["host"] == "h1" and notice["operation"]["status"] == "failed"
    assert notice["bundle_url"] == f"https://panel.example.org/bundles/{bundle.pk}/"


def test_a_failed_scheduled_snapshot_reaches_who_asked_for_those(operator_user, admin_user):
    NotificationChoice.objects.create(user=operator_user, email=True, scheduled=False)
    NotificationChoice.objects.create(user=admin_user, webhook_url="https://h.example/x")
    instance = make_instance(make_host("h1"), "web1")
    scheduled = lifecycle.request(
        instance, "stateful_snapshot", None, params={"snapshot": "auto-1", "keep": 3}
    )
    assert [choice.user for choice in recipients(scheduled)] == [admin_user]


def test_new_causes_only_hears_of_the_first_failure_of_a_cause_and_nobody_of_an_ignored_one(
    operator_user, admin_user
):
    NotificationChoice.objects.create(user=operator_user, email=True, everything=True)
    NotificationChoice.objects.create(
        user=admin_user, email=True, everything=True, new_groups_only=True
    )
    host = make_host("h1")
    first, second = (
        lifecycle.request(make_instance(host, name), "stateful_snapshot", None, params={})
        for name in ("web1", "web2")
    )
    for operation in (first, second):
        fail(operation)
        grouping.group_failure(operation.pk)
    assert {c.user for c in recipients(first)} == {operator_user, admin_user}
    assert {c.user for c in recipients(second)} == {operator_user}  # the same cause again
    grouping.group_of(first).__class__.objects.update(status="ignored")
    assert list(recipients(second)) == []


def test_a_user_chooses_on_their_page_and_a_bad_url_is_refused(operator_client, operator_user):
    page = operator_client.get("/notifications/").content.decode()
    assert "X-Panel-Signature" in page
    refused = operator_client.post("/notifications/", {"webhook_url": "not a url", "mine": "on"})
    assert refused.status_code == 200 and b"Enter a valid URL" in refused.content
    refused = operator_client.post("/notifications/", {"webhook_url": "ftp://h.example/x"})
    assert refused.status_code == 200 and b"Enter a valid URL" in refused.content
    operator_client.post("/notifications/", {"webhook_url": "h.example/hook", "mine": "on"})
    assert (
        NotificationChoice.objects.get(user=operator_user).webhook_url == "https://h.example/hook"
    )
    operator_client.post("/notifications/", {"email": "on", "mine": "on", "scheduled": "on"})
    choice = NotificationChoice.objects.get(user=operator_user)
    assert (choice.email, choice.mine, choice.scheduled, choice.everything) == (
        True, True, True, False,
    )  # fmt: skip
    secret = choice.webhook_secret
    operator_client.post("/notifications/secret/")
    choice.refresh_from_db()
    assert choice.webhook_secret != secret and len(choice.webhook_secret) == 64


LOCAL_WEBHOOKS = [
    "http://127.0.0.1:6379/",  # Redis beside the panel
    "http://0177.0.0.1/",  # the same, as inet_aton reads it
    "http://[::1]:5432/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
    "https://10.0.0.5:8443/1.0",  # an LXD host on the private network
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT space
    "http://0.0.0.0/",
    "http://localhost:8000/admin/",
    "http://api.localhost/",
    "http://metadata.google.internal/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://[2002:7f00:1::]/",  # 6to4 carrying 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 carrying 169.254.169.254
    "http://[fd00:ec2::254]/",
]


def test_a_webhook_to_this_machine_or_its_network_is_refused_with_the_setting_to_allow_it(
    operator_client, operator_user
):
    """Any signed-in user picks their webhook URL and a worker posts to it: not to the
    panel's own services, a metadata address or the private network, unless an admin allows
    it (panel/notify/addresses.py). A global address is taken without a DNS lookup."""
    for url in LOCAL_WEBHOOKS:
        answer = operator_client.post("/notifications/", {"webhook_url": url, "mine": "on"})
        page = answer.content.decode()
        assert answer.status_code == 200, url
        assert "Enter a valid URL" in page or "PANEL_WEBHOOK_LOCAL_ADDRESSES=true" in page, url
        assert refusal_on_save(url), url  # 0177.0.0.1 is refused by Django's validator first
    assert not NotificationChoice.objects.filter(user=operator_user).exclude(webhook_url="")
    operator_client.post("/notifications/", {"webhook_url": "https://8.8.8.8/hook"})
    assert NotificationChoice.objects.get(user=operator_user).webhook_url == "https://8.8.8.8/hook"
    assert refusal_on_send("https://8.8.8.8/hook") == ""
    assert "localhost" in refusal_on_send("http://localhost:1/")  # resolved, then refused
    with override_settings(WEBHOOK_LOCAL_ADDRESSES=True):
        operator_client.post("/notifications/", {"webhook_url": "http://10.0.0.5/x"})
        assert refusal_on_send("http://127.0.0.1:1/") == ""
    assert NotificationChoice.objects.get(user=operator_user).webhook_url == "http://10.0.0.5/x"


@pytest.mark.django_db(transaction=True)
def test_the_worker_does_not_post_to_a_local_address_saved_before_the_check(
    celery_worker, operator_user, smtp_sink, receiver
):
    """A row saved before the rule (or while an admin allowed local addresses): the worker
    resolves the address again right before the POST, and sends nothing there."""
    url, seen = receiver
    operator_user.email = "otto@example.org"
    operator_user.save()
    NotificationChoice.objects.create(user=operator_user, email=True, webhook_url=url)
    instance = make_instance(make_host("h1"), "web1")
    with doomed_worker("local-hook"):
        operation = lifecycle.request(instance, "stateful_snapshot", operator_user, params={})
        fail(operation)
        log = Path(settings.DATA_DIR) / "log" / f"local-hook-{os.getpid()}.log"
        wait_for(lambda: "not posted" in log.read_text(), timeout=90, what="the refusal")
        # Its bundle too, before this worker goes: a job it is killed in comes back to the
        # session worker, which would then write while the next test empties the database.
        wait_for(lambda: not operation.bundles.filter(status=Bundle.Status.COLLECTING),
                 timeout=90, what="the bundle")  # fmt: skip
    assert seen == []
    assert "127.0.0.1 is a local address" in log.read_text()
    assert smtp_sink.messages  # the mail still went
