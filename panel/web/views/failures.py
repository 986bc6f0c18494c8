from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from panel.accounts.roles import can_operate
from panel.failures import requests
from panel.failures.filing import filings
from panel.models import Bundle, FailureGroup, Host, Operation
from panel.web.access import get_failure_group
from panel.web.filters import FailureFilter, web_filtered
from panel.web.forms import (
    FailureNoteForm,
    FailureStatusForm,
    UpstreamForm,
)

PAGE_SIZE = 50


@login_required
@require_GET
def failure_list(request: HttpRequest) -> HttpResponse:
    bundles = Bundle.objects.filter(operation__failure__group=OuterRef("pk"))
    groups = FailureGroup.objects.annotate(
        latest_bundle_id=Subquery(bundles.order_by("-created_at", "-pk").values("pk")[:1])
    )
    groups, filters = web_filtered(FailureFilter, request.GET, groups)
    page = Paginator(groups, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "query": urlencode({key: value for key, value in filters.items() if value}),
        "hosts": Host.objects.enrolled().values_list("name", flat=True),
        "kinds": Operation.Kind.choices,
        "statuses": FailureFilter.base_filters["status"].extra["choices"],
    }
    return render(request, "panel/failures/list.html", context)


@login_required
@require_GET
def failure_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_failure_group(request, pk)
    operations = group.operations().select_related("source_host", "target_host", "requested_by")
    page = Paginator(operations, PAGE_SIZE).get_page(request.GET.get("page"))
    bundles = Bundle.objects.filter(operation__failure__group=group).select_related("requested_by")
    operator = can_operate(request.user)
    context = {
        "group": group,
        "page": page,
        "bundles": bundles[:20],
        "can_operate": operator,
        "filings": filings(group) if operator else [],
        "status_form": FailureStatusForm(initial={"status": group.status}),
        "upstream_form": UpstreamForm(initial={"url": group.upstream_url}),
        "note_form": FailureNoteForm(initial={"note": group.note}),
    }
    return render(request, "panel/failures/detail.html", context)


def changed(request: HttpRequest, group: FailureGroup, form, change, done: str) -> HttpResponse:
    """Apply a valid form's one value with `change`, or say what was wrong; back to the group."""
    if not form.is_valid():
        errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
        messages.error(request, f"Not saved: {errors}")
    else:
        change(group, next(iter(form.cleaned_data.values())), request.user, request)
        messages.success(request, done)
    return redirect("failure-detail", pk=group.pk)


@login_required
@require_POST
def failure_status(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_failure_group(request, pk, change=True)
    form = FailureStatusForm(request.POST)
    return changed(request, group, form, requests.set_status, "Status saved.")


@login_required
@require_POST
def failure_upstream(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_failure_group(request, pk, change=True)
    form = UpstreamForm(request.POST)
    return changed(request, group, form, requests.set_upstream, "Upstream bug saved.")


@login_required
@require_POST
def failure_note(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_failure_group(request, pk, change=True)
    form = FailureNoteForm(request.POST)
    return changed(request, group, form, requests.set_note, "Note saved.")
