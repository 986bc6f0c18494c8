from __future__ import annotations

import csv
import datetime as dt
import itertools
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from panel.models import AuditEvent
from panel.web.access import admin_required
from panel.web.filters import AuditFilter, web_filtered

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


def filtered(request: HttpRequest) -> tuple[dict, QuerySet]:
    events, filters = web_filtered(AuditFilter, request.GET, AuditEvent.objects.all())
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
