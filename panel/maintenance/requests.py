"""Asking for a host's maintenance from the request side (the web, the API, the shell): the
maintenance mode, a plan (drawn up by a worker: the pre-flight of the whole action), and its
confirmation, which starts the parent operation. Each records itself on the audit trail,
the plan's summary and every container's part included."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from panel.accounts.audit import audit
from panel.accounts.models import AuditEvent
from panel.hosts.models import Host
from panel.maintenance.models import HostMaintenance, MaintenancePlan
from panel.operations.lifecycle import TERMINAL
from panel.operations.models import Operation
from panel.operations.requests import Busy, request_host_operation

__all__ = ["Busy", "PlanRefused", "confirm_plan", "request_plan", "reversible", "set_mode"]

Mode = MaintenancePlan.Mode
PLAN_VALID = dt.timedelta(minutes=15)  # a plan older than this is drawn up again first


class PlanRefused(Exception):
    """The plan cannot be asked for or confirmed now; the message says why and what to do."""


def set_mode(host: Host, user, reason: str, request=None) -> HostMaintenance:
    """Put the host in maintenance mode (or change the reason); who, when and why are kept."""
    flag, _ = HostMaintenance.objects.update_or_create(
        host=host,
        defaults={"set_by": user, "set_by_name": user.get_username(), "reason": reason,
                  "set_at": timezone.now()},
    )  # fmt: skip
    audit(request, "maintenance.mode.set", AuditEvent.Outcome.OK, "host", str(host.pk), host.name,
          f"reason: {reason}", username=user.get_username())  # fmt: skip
    return flag


def clear_mode(host: Host, user, request=None) -> bool:
    """Take the host out of maintenance mode; False when it was not in it."""
    cleared, _ = HostMaintenance.objects.filter(host=host).delete()
    if cleared:
        audit(request, "maintenance.mode.clear", AuditEvent.Outcome.OK, "host", str(host.pk),
              host.name, username=user.get_username())  # fmt: skip
    return bool(cleared)


def reversible(host: Host) -> MaintenancePlan | None:
    """The newest checkpoint or evacuation of this host that has ended and that no bring
    back has fully undone: what "bring back" undoes."""
    return (
        MaintenancePlan.objects.filter(
            host=host, mode__in=[Mode.CHECKPOINT, Mode.EVACUATE], operation__status__in=TERMINAL
        )
        .exclude(brought_back_by__operation__status=Operation.Status.SUCCEEDED)
        .order_by("-confirmed_at", "-pk")
        .first()
    )


def request_plan(host: Host, mode: str, user, policy: str, choices: dict) -> MaintenancePlan:
    """A plan, drawn up by a worker from what LXD says now; nothing starts until it is
    confirmed. `choices`: {"targets": {container: host}, "skip": [container, ...]}."""
    reverses = reversible(host) if mode == Mode.BRING_BACK else None
    if mode == Mode.BRING_BACK and reverses is None:
        raise PlanRefused(
            f"There is nothing to bring back to {host.name}: no checkpoint or evacuation of it "
            "has ended without being brought back already."
        )
    with transaction.atomic():
        label = f"plan: {Mode(mode).label.lower()}"
        preflight = request_host_operation(host, Operation.Kind.MAINTENANCE_PLAN, user, label)
        plan = MaintenancePlan.objects.create(
            host=host, mode=mode, policy=policy, choices=choices, requested_by=user,
            preflight=preflight, reverses=reverses,
        )  # fmt: skip
        preflight.params = {"plan": plan.pk, "mode": mode}
        Operation.objects.filter(pk=preflight.pk).update(params=preflight.params)
    return plan


def confirm_plan(plan: MaintenancePlan, user, request=None) -> Operation:
    """Start the parent operation of a drawn-up plan; its children follow the plan."""
    refusal = confirm_refusal(plan)
    if refusal:
        raise PlanRefused(refusal)
    with transaction.atomic():
        locked = MaintenancePlan.objects.select_for_update().get(pk=plan.pk)
        if locked.operation_id is not None:
            raise PlanRefused(f"This plan was confirmed already: operation #{locked.operation_id}.")
        acting = plan.actions()
        label = f"{plan.get_mode_display().lower()}: {len(acting)} containers"
        parent = request_host_operation(
            plan.host, Operation.Kind.MAINTENANCE, user, label, {"plan": plan.pk, "mode": plan.mode}
        )
        plan.operation, plan.confirmed_at = parent, timezone.now()
        plan.save(update_fields=["operation", "confirmed_at"])
        lines = [f"{item['name']}: {item['fate']}" for item in plan.items]
        audit(request, "maintenance.confirm", AuditEvent.Outcome.OK, "operation", str(parent.pk),
              str(parent), f"plan #{plan.pk} of {plan.host.name}, {plan.get_mode_display()}: "
              f"{plan.summary} | " + " | ".join(lines), username=user.get_username())  # fmt: skip
    return parent


def confirm_refusal(plan: MaintenancePlan) -> str:
    state = plan.state
    if state == "drawing":
        return "The plan is still being drawn up: wait for it."
    if state == "failed":
        return "This plan could not be drawn up (see why on its page): ask for a new one."
    if state == "confirmed":
        return f"This plan was confirmed already: operation #{plan.operation_id}."
    if timezone.now() - plan.created_at > PLAN_VALID:
        minutes = int(PLAN_VALID.total_seconds() // 60)
        return f"This plan is over {minutes} minutes old: check again, then confirm the new one."
    if not plan.actions():
        return "This plan does nothing to any container: there is nothing to start."
    return ""
