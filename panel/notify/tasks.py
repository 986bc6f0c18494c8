"""The notifications' Celery tasks: work out who hears of a failure, mail them, and send each
webhook as its own task, retried with a growing wait."""

from __future__ import annotations

import datetime as dt
import logging

import requests
from django.utils import timezone

from panel.notify.addresses import refusal_on_send
from panel.notify.models import NotificationChoice
from panel.notify.send import payload, post_webhook, recipients, send_email
from panel.operations.models import Operation
from workers.celery import app

logger = logging.getLogger(__name__)
# The automatic bundle's row appears as its task starts; wait this long for it, so the
# notice can link it.
BUNDLE_WAIT = dt.timedelta(seconds=60)
WEBHOOK_RETRIES = 6  # 5 s, 10 s, 20 s, 40 s, 80 s, 160 s: about five minutes in all


@app.task(bind=True, max_retries=30)
def notify_failure(self, operation_id: int) -> None:
    operation = (
        Operation.objects.select_related("source_host", "target_host")
        .filter(pk=operation_id)
        .first()
    )
    if operation is None:
        return
    bundle = operation.bundles.filter(automatic=True).values_list("pk", flat=True).first()
    recently = operation.finished_at and timezone.now() - operation.finished_at < BUNDLE_WAIT
    if bundle is None and recently:
        raise self.retry(countdown=2)
    notice = payload(operation, bundle)
    for choice in recipients(operation):
        if choice.email and choice.user.email:
            try:
                send_email(choice, notice)
            except OSError as error:  # the mail server is down: say so, do not stop the rest
                logger.warning("mail to %s about #%s failed: %s", choice.user, operation.pk, error)
        if choice.webhook_url:
            deliver_webhook.delay(choice.pk, notice)


@app.task(bind=True, max_retries=WEBHOOK_RETRIES)
def deliver_webhook(self, choice_id: int, notice: dict) -> None:
    choice = NotificationChoice.objects.filter(pk=choice_id).first()
    if choice is None or not choice.webhook_url:
        return
    why = refusal_on_send(choice.webhook_url)
    if why:  # not retried: the address will not become global by waiting
        logger.warning("webhook %s of %s not posted: %s", choice.webhook_url, choice.user, why)
        return
    try:
        post_webhook(choice.webhook_url, choice.webhook_secret, notice)
    except requests.RequestException as error:
        wait = 5 * 2**self.request.retries
        logger.warning("webhook %s: %s; retrying in %s s", choice.webhook_url, error, wait)
        raise self.retry(countdown=wait) from error
