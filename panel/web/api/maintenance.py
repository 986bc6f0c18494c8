"""The JSON API of a host's maintenance (docs/api.md, "Host maintenance"; docs/maintenance.md):
its maintenance mode, plans and their confirmation, with the web's forms, access helpers and
request functions (panel/maintenance/requests.py)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from panel.maintenance.requests import (
    Busy,
    PlanRefused,
    clear_mode,
    confirm_plan,
    request_plan,
    set_mode,
)
from panel.models import MaintenancePlan
from panel.web.access import get_host, get_plan
from panel.web.api.base import (
    allow,
    created,
    error,
    form_errors,
    json_object,
    stamp,
    token_required,
    url,
)
from panel.web.api.schema import describe
from panel.web.api.serialise import host_json, operation_detail_json, operation_json
from panel.web.api.shapes import HostShape, MaintenancePlanShape, OperationDetailShape
from panel.web.forms import MaintenanceModeForm, MaintenancePlanForm


def plan_json(request: HttpRequest, plan: MaintenancePlan) -> MaintenancePlanShape:
    return {
        "id": plan.pk,
        "url": url(request, "api-maintenance-plan", plan.pk),
        "host": {"id": plan.host_id, "name": plan.host.name},
        "mode": plan.mode,
        "policy": plan.policy,
        "choices": plan.choices,
        "state": plan.state,
        "requested_by": getattr(plan.requested_by, "username", None),
        "created_at": stamp(plan.created_at),
        "reverses": plan.reverses_id,
        "preflight": operation_json(request, plan.preflight) if plan.preflight else None,
        "summary": plan.summary,
        "items": plan.items,
        "confirmed_at": stamp(plan.confirmed_at),
        "operation": url(request, "api-operation-detail", plan.operation_id)
        if plan.operation_id
        else None,
    }


@describe("POST", "Set the host's maintenance mode (administrators): no new operation or "
          "migration targets it and its scheduled snapshots pause; `reason` is shown in every "
          "refusal.", response=HostShape, body=MaintenanceModeForm,
          refusals=(400, 403, 404, 413, 415))  # fmt: skip
@describe("DELETE", "Clear the host's maintenance mode (administrators).", response=HostShape,
          refusals=(403, 404))  # fmt: skip
@token_required
@allow("POST", "DELETE")
def host_maintenance(request: HttpRequest, pk: int) -> JsonResponse:
    """POST {"reason": "..."} sets the host's maintenance mode (administrators); DELETE
    clears it. Answers the host, its `maintenance` included."""
    host = get_host(request, pk, manage=True)
    if request.method == "DELETE":
        clear_mode(host, request.user, request)
        return JsonResponse(host_json(request, host))
    form = MaintenanceModeForm(json_object(request))
    if not form.is_valid():
        return form_errors(form)
    set_mode(host, request.user, form.cleaned_data["reason"], request)
    return JsonResponse(host_json(request, host))


@describe("POST", "Draw up a plan to empty the host (operators): `mode` checkpoint (in place) "
          "or evacuate, `policy` for what cannot be checkpointed or moved, and per container "
          "`target:NAME` (a host's name) or `skip:NAME` (true). Poll the plan until it is "
          "ready; nothing runs until it is confirmed.",
          response=MaintenancePlanShape, status=201, body=MaintenancePlanForm,
          refusals=(400, 403, 404, 409, 413, 415))  # fmt: skip
@token_required
@allow("POST")
def host_maintenance_plans(request: HttpRequest, pk: int) -> JsonResponse:
    """A plan for the host (operators): {"mode": "evacuate", "policy": "stop",
    "target:NAME": "host2", "skip:NAME": true}; 201, then poll it until it is ready."""
    host = get_host(request, pk, operate=True)
    data = json_object(request)
    data.setdefault("policy", MaintenancePlanForm.base_fields["policy"].initial)
    names = set(host.instances.present().values_list("name", flat=True))
    names |= MaintenancePlanForm.names_in(data)
    form = MaintenancePlanForm(data, host=host, names=sorted(names))
    if not form.is_valid():
        return form_errors(form)
    try:
        plan = request_plan(host, form.cleaned_data["mode"], request.user,
                            form.cleaned_data["policy"], form.choices())  # fmt: skip
    except PlanRefused as refused:
        return error(409, str(refused))
    return created(request, plan_json(request, plan))


@describe("GET", "One maintenance plan: each container, its target, strategy, expected "
          "downtime, and why what cannot move or be checkpointed will not.",
          response=MaintenancePlanShape, refusals=(404,))  # fmt: skip
@token_required
@allow("GET")
def maintenance_plan(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(plan_json(request, get_plan(request, pk)))


@describe("POST", "Confirm a ready plan (operators): its parent operation starts, one child "
          "operation per container; follow `children`.", response=OperationDetailShape,
          status=201, refusals=(403, 404, 409))  # fmt: skip
@token_required
@allow("POST")
def maintenance_confirm(request: HttpRequest, pk: int) -> JsonResponse:
    """Start the plan's parent operation: 201 with it; 409 when the plan cannot start."""
    plan = get_plan(request, pk, operate=True)
    try:
        parent = confirm_plan(plan, request.user, request)
    except (PlanRefused, Busy) as refused:
        return error(409, f"Not started: {refused}")
    return created(request, operation_detail_json(request, parent))
