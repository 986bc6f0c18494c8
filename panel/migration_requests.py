"""What the web, the API and the shell share when asking for a migration or a cancel, so the
three apply one set of rules (panel/views/migrations.py, panel/views/operations.py, panel/api.py,
the `panel` management command)."""

from __future__ import annotations

from panel.models import Host, Instance, Operation
from panel.strategy import recommend


class StrategyRefused(Exception):
    """The chosen (or recommended) strategy needs CRIU on a host that cannot checkpoint."""


def resolve_strategy(instance: Instance, target: Host, chosen: str) -> tuple[str, str]:
    """The strategy to migrate with and why: the recommended one for this host pair unless
    the user chose one for a running container."""
    criu_possible = all(h.capability("live_migration").allowed for h in (instance.host, target))
    strategy, reason = recommend(instance.host, target, instance.is_running, criu_possible)
    if chosen != "auto" and instance.is_running:
        strategy, reason = chosen, "Chosen by the user."
    if strategy in ("live", "stateful_move") and not criu_possible:
        raise StrategyRefused(
            "one of the hosts cannot checkpoint containers; choose stop, move, start."
        )
    return strategy, reason


def request_cancel(operation: Operation, user) -> str:
    """Cancel a queued operation, or ask a running one to stop at the next step that allows
    it. Returns "cancelled", "requested" or "ended" (nothing to cancel)."""
    cancelled_while_queued = Operation.objects.filter(
        pk=operation.pk, status=Operation.Status.PENDING
    ).update(status=Operation.Status.CANCELLED, outcome="Cancelled before it started.")
    if cancelled_while_queued:
        operation.log(f"Cancelled by {user} before a worker started it.", "cancelled")
        return "cancelled"
    if operation.is_active:
        Operation.objects.filter(pk=operation.pk).update(cancel_requested=True)
        operation.log(f"{user} asked to cancel.")
        return "requested"
    return "ended"


def migration_fields(instance: Instance, form, resolve: bool) -> dict:
    """What request_operation needs for a pre-flight (resolve=False) or a migration
    (resolve=True: the strategy is settled here and may raise StrategyRefused), from a
    valid MigrationForm."""
    target, params = form.cleaned_data["target"], form.params()
    if resolve:
        strategy, reason = resolve_strategy(instance, target, params["strategy"])
        params.update(strategy=strategy, strategy_reason=reason)
    name = form.cleaned_data["new_name"] or instance.name
    return {"params": params, "target_host": target, "target_name": name}
