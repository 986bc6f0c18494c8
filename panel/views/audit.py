from __future__ import annotations

import csv
import datetime as dt
import itertools
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET

from panel.access import admin_required
from panel.models import AuditEvent

FILTERS = ("user", "action", "outcome", "object", "since", "until")
CSV_COLUMNS = [
    "at",
    "username",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "address",
    "outcome",
    "detail",
]


def filtered(request: HttpRequest) -> tuple[dict, object]:
    # A NUL byte is refused by PostgreSQL in any query: drop it before it gets there.
    filters = {key: request.GET.get(key, "")[:100].replace("\x00", "") for key in FILTERS}
    events = AuditEvent.objects.all()
    if filters["user"]:
        events = events.filter(username=filters["user"])
    if filters["action"]:
        events = events.filter(action=filters["action"])
    if filters["outcome"]:
        events = events.filter(outcome=filters["outcome"])
    if filters["object"]:
        events = events.filter(object_repr__icontains=filters["object"])
    since, until = parse_day(filters["since"]), parse_day(filters["until"])
    if since:
        events = events.filter(at__date__gte=since)
    if until:
        events = events.filter(at__date__lte=until)
    return filters, events


@login_required
@admin_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    filters, events = filtered(request)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = urlencode({key: value for key, value in filters.items() if value})
    context = {
        "page": page,
        "filters": filters,
        "query": query,
        "outcomes": AuditEvent.Outcome.choices,
    }
    return render(request, "panel/audit/list.html", context)


def parse_day(text: str) -> dt.date | None:
    try:
        return parse_date(text) if text else None
    except ValueError:  # a well-formed but impossible date, like 2026-02-31
        return None


class Echo:
    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value) -> str:
    """Cells starting with = + - @ are formulas to a spreadsheet: make them plain text."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@login_required
@admin_required
@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    _, events = filtered(request)
    writer = csv.writer(Echo())
    rows = (
        writer.writerow([spreadsheet_safe(getattr(event, column)) for column in CSV_COLUMNS])
        for event in events.iterator()
    )
    header = [writer.writerow(CSV_COLUMNS)]
    response = StreamingHttpResponse(itertools.chain(header, rows), content_type="text/csv")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
