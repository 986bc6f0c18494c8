"""Asking for operations from the request side (the web, the API, the shell, schedules): one
transaction, one active operation per container, the job sent by name after commit. The three
front ends share these functions, so they apply one set of rules."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from panel import broker
from panel.hosts.models import Host, Instance
from panel.operations import kinds, lifecycle
from panel.operations.lifecycle import Busy
from panel.operations.models import Operation
from panel.operations.strategy import pools_for, recommend

logger = logging.getLogger(__name__)

__all__ = [
    "Busy",
    "StrategyRefused",
    "migration_fields",
    "recommended",
    "request_cancel",
    "request_host_operation",
    "request_operation",
]


def request_operation(
    instance: Instance, kind: str, user, params: dict | None = None, **fields
) -> Operation:
    """Create the pending Operation and send its job after commit, or raise Busy."""
    operation = lifecycle.request(instance, kind, user, params, **fields)
    transaction.on_commit(lambda: send(operation))
    return operation


def request_host_operation(
    host: Host, kind: str, user, label: str, params: dict | None = None
) -> Operation:
    """A host-level operation (a maintenance or its pre-flight), sent after commit; Busy
    when a maintenance is already under way on the host."""
    operation = lifecycle.request_for_host(host, kind, user, label, params)
    transaction.on_commit(lambda: send(operation))
    return operation


def send(operation: Operation) -> None:
    """Send the operation's job. If Redis does not answer, the row stays pending and says
    so; the reconciler sends it again once the queue is back (docs/operations.md)."""
    try:
        broker.send(kinds.task_for(operation.kind), operation.pk)
    except broker.QueueUnavailable as error:
        logger.warning("operation %s: job queue unreachable: %s", operation.pk, error)
        minutes = settings.RECONCILE_SILENT_SECONDS // 60 + 1
        operation.log(
            f"The job queue (Redis at {broker.broker_address()}) did not answer, so no worker "
            f"has this yet. It stays queued: the panel sends it again by itself, about "
            f"{minutes} minutes after it was asked, or within a minute of Redis coming back if "
            "that is later. Cancel it if it should not run then.",
            "queued",
        )


def request_cancel(operation: Operation, user) -> str:
    """Cancel a queued operation, or ask a running one to stop at the next step that allows
    it. Returns "cancelled", "requested" or "ended" (nothing to cancel)."""
    return lifecycle.cancel(operation, user)


class StrategyRefused(Exception):
    """The chosen (or recommended) strategy needs CRIU on a host that cannot checkpoint."""


def recommended(instance: Instance, target: Host, pool: str = "") -> tuple[str, str, str]:
    """(the strategy recommended for this host pair and pool pair, why, and why no CRIU
    strategy can be used or ''): the confirm page and the migration ask the same."""
    refusal = kinds.criu_refusal(instance.host, target)
    pools = pools_for(instance, target, pool)
    why_not = f"Stop, move, start: {refusal}" if refusal else ""
    strategy, reason = recommend(
        instance.host, target, instance.is_running, not refusal, pools, why_not
    )
    return strategy, reason, refusal


def resolve_strategy(
    instance: Instance, target: Host, chosen: str, pool: str = ""
) -> tuple[str, str]:
    """The strategy to migrate with and why: the recommended one unless the user chose one
    for a running container."""
    strategy, reason, refusal = recommended(instance, target, pool)
    if chosen != "auto" and instance.is_running:
        strategy, reason = chosen, "Chosen by the user."
    if strategy in ("live", "stateful_move") and refusal:
        raise StrategyRefused(f"{refusal} Choose stop, move, start.")
    return strategy, reason


def migration_fields(instance: Instance, form, resolve: bool) -> dict:
    """What request_operation needs for a pre-flight (resolve=False) or a migration
    (resolve=True: the strategy is settled here and may raise StrategyRefused), from a
    valid MigrationForm."""
    target, params = form.cleaned_data["target"], form.params()
    if resolve:
        strategy, reason = resolve_strategy(instance, target, params["strategy"], params["pool"])
        params.update(strategy=strategy, strategy_reason=reason)
    name = form.cleaned_data["new_name"] or instance.name
    return {"params": params, "target_host": target, "target_name": name}
