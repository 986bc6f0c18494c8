from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from panel.accounts.roles import can_operate
from panel.maintenance.parent import live_rows
from panel.models import Host, Operation
from panel.operations.aftercare import copy_left
from panel.operations.requests import Busy, recommended, request_cancel, request_operation
from panel.operations.strategy import LABELS
from panel.web.access import HtmxHttpRequest, get_instance, get_operation
from panel.web.filters import OperationFilter, web_filtered
from panel.web.forms import STRATEGY_CHOICES, OperationForm
from panel.web.progress_card import progress_card

PAGE_SIZE = 50
# What the progress fragment never shows, so its poll does not read it: `result` holds the
# pre-flight checks and the phases (kilobytes of JSON), and the rest is the worker's. A
# card that needs one of them (panel/web/progress_card.py) costs one query more per poll
# (tests/test_operations.py counts).
PROGRESS_UNREAD = ("result", "claim_token", "lxd_operation_ids")


@login_required
@require_POST
def instance_operation(request: HttpRequest, pk: int) -> HttpResponse:
    """Every button on the container page posts here with its kind."""
    instance = get_instance(request, pk, operate=True)
    form = OperationForm(request.POST, instance=instance)
    if not form.is_valid():
        errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
        messages.error(request, f"Not started: {errors}")
        return redirect("instance-detail", pk=instance.pk)
    return queue_operation(request, instance, form.cleaned_data["kind"], params=form.params())


def queue_operation(request: HttpRequest, instance, kind: str, **fields) -> HttpResponse:
    """Ask for the operation and follow it, or say the container is busy, with a link."""
    try:
        operation = request_operation(instance, kind, request.user, **fields)
    except Busy as busy:
        link = reverse("operation-detail", kwargs={"pk": busy.active.pk}) if busy.active else ""
        messages.error(request, format_html('{} <a href="{}">Follow it</a>.', busy, link))
        return redirect("instance-detail", pk=instance.pk)
    return redirect("operation-detail", pk=operation.pk)


@login_required
@require_GET
def operation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    operation = get_operation(request, pk)
    context = {"operation": operation, "events": operation.events.all(),
               "can_operate": can_operate(request.user),
               "copy_left": copy_left(operation)}  # fmt: skip
    if operation.kind == Operation.Kind.PREFLIGHT and not operation.is_active:
        context.update(migration_choices(operation))
    if operation.kind == Operation.Kind.MAINTENANCE:
        context["rows"] = live_rows(operation)
    return render(request, "panel/operations/detail.html", context)


def migration_choices(preflight: Operation) -> dict:
    """The confirm step: the recommended strategy and why, and what blocks each strategy."""
    checks = preflight.result.get("checks", [])
    instance, target = preflight.instance, preflight.target_host
    if instance is None or target is None:
        return {}
    pool = preflight.params.get("pool", "")
    strategy, reason, _ = recommended(instance, target, pool)
    strategies = [
        (
            value,
            label,
            [c["label"] for c in checks if c["status"] == "fail" and value in c["blocks"]],
        )
        for value, label in STRATEGY_CHOICES[1:]
    ]
    return {"recommendation": {"label": LABELS[strategy], "reason": reason},
            "strategies": strategies}  # fmt: skip


@login_required
@require_GET
def operation_progress(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The polled fragment: one primary-key read, the card built in Python, never LXD. When the
    operation has ended, answer 286 so htmx stops polling."""
    operation = get_operation(request, pk, without=PROGRESS_UNREAD)
    card = progress_card(operation, can_operate=operation.is_active and can_operate(request.user))
    if operation.is_active or not request.htmx:
        return HttpResponse(card)
    stop = HttpResponseStopPolling(card)
    stop["HX-Refresh"] = "true"  # the full page shows the timeline and the recovery buttons
    return stop


@login_required
@require_POST
def operation_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    operation = get_operation(request, pk, operate=True)
    outcome = request_cancel(operation, request.user)
    detail = reverse("operation-detail", kwargs={"pk": operation.pk})
    if outcome == "cancelled":
        messages.success(request, "Cancelled before it started; nothing was done.")
    elif outcome == "requested":
        messages.info(request, f"Cancel requested: {operation.server_names} is asked if the "
                      "current step allows it.")  # fmt: skip
    else:
        messages.error(request, "This operation has already ended.")
    if request.htmx:  # the card's form, which htmx sends: the whole page follows
        return HttpResponseClientRedirect(detail)
    return redirect(detail)


@login_required
@require_GET
def operation_list(request: HttpRequest) -> HttpResponse:
    operations = Operation.objects.select_related("source_host", "target_host", "requested_by")
    operations, filters = web_filtered(OperationFilter, request.GET, operations)
    page = Paginator(operations.order_by("-queued_at", "-pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "filters": filters,
        "query": urlencode({key: value for key, value in filters.items() if value}),
        "hosts": Host.objects.enrolled().values_list("name", flat=True),
        "kinds": Operation.Kind.choices,
        "statuses": Operation.Status.choices,
    }
    return render(request, "panel/operations/list.html", context)
