"""Sending work to the workers, and what happens when the job queue (Redis) does not answer.

The request side (views, the API, the shell command, and one domain asking another) sends
jobs by task name with `send` / `send_on_commit`, as zulip's queue_event_on_commit does: it
never imports a task module, so no domain's request code pulls in another's worker code.

Operations are rows first and jobs second: an operation whose job could not be sent stays
pending, says so on its page, and the reconciler sends it again later (docs/operations.md). Any
other request that needed the queue (a sync button, a bundle) is answered 503 with what to
do, instead of a bare server error.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import render
from kombu.exceptions import OperationalError

from panel.redaction import without_credentials

logger = logging.getLogger(__name__)

QueueUnavailable = OperationalError  # what Celery raises when it cannot reach the broker


def send(task_name: str, *args: object, countdown: float | None = None) -> None:
    """Send a job now; raises QueueUnavailable when Redis does not answer."""
    from workers.celery import app

    # Results live in the database; without ignore_result Celery would subscribe to each
    # job's result on the result backend (one more Redis round trip, and an error of its own).
    app.send_task(task_name, args=args, countdown=countdown, ignore_result=True)


def send_on_commit(task_name: str, *args: object) -> None:
    """Send a job once the current transaction commits (at once outside one), so a worker
    never looks for a row that is not there yet."""
    transaction.on_commit(lambda: send(task_name, *args))


def broker_address() -> str:
    """host:port of the broker, never its password."""
    parts = urlsplit(settings.CELERY_BROKER_URL)
    return f"{parts.hostname}:{parts.port or 6379}"


def broker_url() -> str:
    """The broker's URL as it may be shown or logged: without its user and password."""
    return without_credentials(settings.CELERY_BROKER_URL)


def redis_client():
    """A plain redis-py client on the panel's Redis, with the same TLS settings as Celery."""
    import redis

    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, **(settings.CELERY_BROKER_USE_SSL or {})
    )


def queue_down_message() -> str:
    return (
        f"The job queue (Redis at {broker_address()}) is not answering, so the work this "
        "needed was not started. Try again once Redis is back; `manage.py doctor` checks "
        "it and says how to fix it."
    )


class QueueDownMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, QueueUnavailable):
            return None
        logger.warning("job queue unreachable for %s: %s", request.path, exception)
        message = queue_down_message()
        if request.path.startswith("/api/"):
            return JsonResponse({"error": message}, status=503)
        return render(request, "panel/queue_down.html", {"message": message}, status=503)
