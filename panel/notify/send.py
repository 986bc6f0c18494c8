"""Who hears of a failed operation, what they are told, and the two ways of telling them:
e-mail through Django's mail backend, and a JSON POST signed with the user's shared secret.

The message says what failed, on which container and host, the outcome (where the container
is and what to do) and links to the operation and its bug-report bundle."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q, QuerySet
from django.urls import reverse

from panel.failures import grouping
from panel.notify.models import NotificationChoice
from panel.operations.models import Operation

logger = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_SECONDS = 10
SIGNATURE_HEADER = "X-Panel-Signature"


def is_scheduled(operation: Operation) -> bool:
    """A schedule's run: a stateful snapshot nobody asked for by hand, with a retention."""
    return operation.requested_by_id is None and "keep" in (operation.params or {})


def recipients(operation: Operation) -> QuerySet[NotificationChoice]:
    """Everyone whose choices cover this failure and who has a way to be told. A failure of
    a group the team ignores is told to nobody; one of a known cause only to those who did
    not ask for new causes only (failure groups, panel/failures/)."""
    if grouping.is_quiet(operation):
        return NotificationChoice.objects.none()
    wanted = Q(everything=True)
    if operation.requested_by_id is not None:
        wanted |= Q(mine=True, user_id=operation.requested_by_id)
    if is_scheduled(operation):
        wanted |= Q(scheduled=True)
    choices = NotificationChoice.objects.filter(wanted, user__is_active=True)
    if not grouping.is_new_group(operation):
        choices = choices.exclude(new_groups_only=True)
    return choices.exclude(Q(email=False) & Q(webhook_url="")).select_related("user")


def absolute(path: str) -> str:
    return settings.PUBLIC_URL.rstrip("/") + path


def payload(operation: Operation, bundle_id: int | None) -> dict:
    host = operation.source_host.name if operation.source_host else ""
    return {
        "event": "operation.failed",
        "operation": {
            "id": operation.pk,
            "kind": operation.kind,
            "status": operation.status,
            "scheduled": is_scheduled(operation),
            # Stored redacted; redacted again as it leaves for a mailbox or a webhook, in case
            # the policy's patterns grew since (panel/redaction.py).
            "outcome": operation.redacted(operation.outcome),
            "error": operation.redacted(operation.error),
            "container_state_after": operation.container_state_after,
            "finished_at": operation.finished_at.isoformat() if operation.finished_at else None,
            "url": absolute(reverse("operation-detail", kwargs={"pk": operation.pk})),
        },
        "container": operation.instance_name,
        "host": host,
        "target_host": operation.target_host.name if operation.target_host else None,
        "bundle_url": absolute(reverse("bundle-detail", kwargs={"pk": bundle_id}))
        if bundle_id
        else None,
    }


def subject_and_body(notice: dict) -> tuple[str, str]:
    operation = notice["operation"]
    what = "Scheduled stateful snapshot" if operation["scheduled"] else operation["kind"]
    subject = (
        f"[LXD panel] {what} of {notice['container']} on {notice['host']} {operation['status']}"
    )
    lines = [
        f"{what} #{operation['id']} of {notice['container']} on {notice['host']}: "
        f"{operation['status']}.",
        "",
        operation["outcome"],
    ]
    if operation["error"]:
        lines += ["", "LXD said:", operation["error"]]
    lines += ["", f"The operation: {operation['url']}"]
    if notice["bundle_url"]:
        lines.append(f"The bug-report bundle: {notice['bundle_url']}")
    return subject[:200], "\n".join(lines)


def send_email(choice: NotificationChoice, notice: dict) -> None:
    subject, body = subject_and_body(notice)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [choice.user.email])


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(url: str, secret: str, notice: dict) -> None:
    """One delivery; raises on anything but a 2xx answer (the task retries)."""
    body = json.dumps(notice, sort_keys=True).encode()
    response = requests.post(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(secret, body),
            "X-Panel-Event": notice["event"],
        },
        timeout=WEBHOOK_TIMEOUT_SECONDS,
        allow_redirects=False,
    )
    response.raise_for_status()
