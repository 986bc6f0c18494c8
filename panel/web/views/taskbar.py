"""The task bar every page carries ("N running, M failed in the last hour"), and the toasts
that tell a user, wherever they are, that an operation they started has ended.

The bar polls every 5 s with the time of its previous answer (`since`); the answer is the
new bar, plus one toast per operation of this user that ended in between, swapped out of
band into the page's toast area. No session write per poll: the page carries its place. A
page's first poll also looks back CATCH_UP, so an operation that ended while the browser
went from one page to the next still gets its toast; panel.js drops a toast the tab has
already shown."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from panel.models import Operation
from panel.web.access import AuthenticatedHttpRequest

FAILED_WINDOW = dt.timedelta(hours=1)
# A poll that comes back after a long sleep (a laptop lid) shows no toast older than this.
TOAST_HORIZON = dt.timedelta(minutes=10)
CATCH_UP = dt.timedelta(seconds=30)


def taskbar_context(user, since: dt.datetime | None) -> dict:
    """The counts, and the toasts of `user`'s operations that ended after `since` (none
    when it is None: a page's first render, whose poll then catches up)."""
    now = timezone.now()
    operations = Operation.objects.all()
    ended: list[Operation] = []
    if since is not None:
        ended = list(
            operations.filter(requested_by=user)
            .ended_between(max(since, now - TOAST_HORIZON), now)
            .order_by("finished_at")[:5]
        )
    return {
        "running": operations.active().count(),
        "failed": operations.failed().filter(finished_at__gte=now - FAILED_WINDOW).count(),
        "now": now.timestamp() if since is not None else (now - CATCH_UP).timestamp(),
        "ended": ended,
    }


def parse_since(raw: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(float(raw or ""), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


@login_required
@require_GET
def taskbar(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = taskbar_context(request.user, parse_since(request.GET.get("since")))
    return render(request, "panel/_taskbar.html", context)
