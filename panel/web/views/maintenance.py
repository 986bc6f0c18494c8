"""A host's maintenance in the browser: its maintenance mode (administrators), and the host
actions (operators): ask for a plan, look at it, check it again with other choices, confirm
it; then the parent operation's page follows every container (panel/maintenance/)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from panel.accounts.roles import can_manage_hosts, can_operate
from panel.maintenance.mode import flag_of
from panel.maintenance.parent import live_rows
from panel.maintenance.requests import (
    Busy,
    PlanRefused,
    clear_mode,
    confirm_plan,
    request_plan,
    reversible,
    set_mode,
)
from panel.models import Host, MaintenancePlan, Operation, SnapshotSchedule
from panel.web.access import HtmxHttpRequest, get_host, get_operation, get_plan
from panel.web.forms import MaintenanceModeForm, MaintenancePlanForm


def host_panel(host: Host, user) -> dict:
    """The host page's maintenance card: the mode (who, when, why), what runs, what can be
    brought back, the latest plans."""
    return {
        "maintenance_flag": flag_of(host),
        "maintenance_under_way": Operation.objects.active()
        .filter(kind=Operation.Kind.MAINTENANCE, source_host=host)
        .first(),
        "maintenance_reversible": reversible(host),
        "maintenance_plans": host.maintenance_plans.select_related("operation", "preflight")[:5],
        "paused_schedules": SnapshotSchedule.objects.filter(
            instance__host=host, enabled=True, instance__gone_at__isnull=True
        ).count(),
        "plan_policies": MaintenancePlan.Policy.choices,
        "can_manage": can_manage_hosts(user),
        "can_operate": can_operate(user),
    }


def back_to_host(host: Host) -> HttpResponse:
    return redirect(reverse("host-detail", kwargs={"pk": host.pk}) + "#maintenance")


@login_required
@require_POST
def host_maintenance_mode(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk, manage=True)
    form = MaintenanceModeForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Maintenance mode not set: {errors}")
        return back_to_host(host)
    set_mode(host, request.user, form.cleaned_data["reason"], request)
    messages.success(request, f"{host.name} is in maintenance mode: nothing new targets it.")
    return back_to_host(host)


@login_required
@require_POST
def host_maintenance_clear(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk, manage=True)
    if clear_mode(host, request.user, request):
        messages.success(request, f"{host.name} is out of maintenance mode.")
    else:
        messages.info(request, f"{host.name} was not in maintenance mode.")
    return back_to_host(host)


def plan_form(request: HttpRequest, host: Host, plan: MaintenancePlan | None = None):
    """The plan's form; per-container choices for the containers the plan names (a bring
    back's are mostly on other hosts), else for the host's own."""
    data = request.POST.copy()
    if plan is not None:
        data["mode"] = plan.mode
        names = [item["name"] for item in plan.items]
    else:
        names = list(host.instances.present().values_list("name", flat=True))
        if data.get("mode") == MaintenancePlan.Mode.BRING_BACK:
            earlier = reversible(host)
            names += [item["name"] for item in earlier.items] if earlier else []
    return MaintenancePlanForm(data, host=host, names=sorted(set(names)))


def ask_for_plan(request: HttpRequest, host: Host, form: MaintenancePlanForm) -> HttpResponse:
    if not form.is_valid():
        errors = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"No plan: {errors}")
        return back_to_host(host)
    data = form.cleaned_data
    try:
        plan = request_plan(host, data["mode"], request.user, data["policy"], form.choices())
    except PlanRefused as refused:
        messages.error(request, f"No plan: {refused}")
        return back_to_host(host)
    return redirect("maintenance-plan", pk=plan.pk)


@login_required
@require_POST
def host_maintenance_plan(request: HttpRequest, pk: int) -> HttpResponse:
    """Step one: a worker draws up the plan from what LXD says now; nothing starts."""
    host = get_host(request, pk, operate=True)
    return ask_for_plan(request, host, plan_form(request, host))


@login_required
@require_GET
def maintenance_plan(request: HttpRequest, pk: int) -> HttpResponse:
    plan = get_plan(request, pk)
    others = list(Host.objects.enrolled().exclude(pk=plan.host_id).values_list("name", flat=True))
    context = {
        "plan": plan,
        "rows": plan_rows(plan, others),
        "policies": MaintenancePlan.Policy.choices,
        "host_limit": settings.HOST_MAX_OPERATIONS,
        "can_operate": can_operate(request.user),
    }
    return render(request, "panel/maintenance/plan.html", context)


def plan_rows(plan: MaintenancePlan, others: list[str]) -> list[dict]:
    """The plan's items with the choices made on it, and each other host as a target
    option with why it cannot take the container ('' when it can)."""
    chosen, skipped = plan.choices.get("targets", {}), set(plan.choices.get("skip", []))
    return [
        {
            **item,
            "chosen": chosen.get(item["name"], ""),
            "skipped": item["name"] in skipped,
            "options": [(name, item["candidates"].get(name, "")) for name in others],
        }
        for item in plan.items
    ]


@login_required
@require_POST
def maintenance_recheck(request: HttpRequest, pk: int) -> HttpResponse:
    """The plan again, with the choices made on it (targets, skips, policy)."""
    plan = get_plan(request, pk, operate=True)
    return ask_for_plan(request, plan.host, plan_form(request, plan.host, plan))


@login_required
@require_POST
def maintenance_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    """Step two: start the parent operation; each container becomes a child operation."""
    plan = get_plan(request, pk, operate=True)
    try:
        parent = confirm_plan(plan, request.user, request)
    except (PlanRefused, Busy) as refused:
        messages.error(request, f"Not started: {refused}")
        return redirect("maintenance-plan", pk=plan.pk)
    return redirect("operation-detail", pk=parent.pk)


@login_required
@require_GET
def operation_children(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The polled table of a maintenance's children; 286 once the parent has ended."""
    operation = get_operation(request, pk)
    context = {"operation": operation, "rows": live_rows(operation)}
    response = render(request, "panel/maintenance/_children.html", context)
    if operation.is_active or not request.htmx:
        return response
    return HttpResponseStopPolling(response.content)
