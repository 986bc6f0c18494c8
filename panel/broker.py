"""When the job queue (Redis) does not answer.

Operations are rows first and jobs second: an operation whose job could not be sent stays
pending, says so on its page, and the reconciler sends it again later (docs/operations.md). Any
other request that needed the queue (a sync button, a bundle) is answered 503 with what to
do, instead of a bare server error.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

QueueUnavailable = OperationalError  # what Celery raises when it cannot reach the broker


def broker_address() -> str:
    """host:port of the broker, never its password."""
    parts = urlsplit(settings.CELERY_BROKER_URL)
    return f"{parts.hostname}:{parts.port or 6379}"


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
