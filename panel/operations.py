"""Asking for an operation: one transaction, one active operation per container, enqueued
after commit with the row's id."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from panel.broker import QueueUnavailable, broker_address
from panel.models import Instance, Operation
from workers.migrations import run_migration_operation
from workers.operations import run_operation

logger = logging.getLogger(__name__)

MIGRATION_KINDS = {Operation.Kind.PREFLIGHT, Operation.Kind.MIGRATE, Operation.Kind.DELETE_COPY}


class Busy(Exception):
    """The container already has an active operation."""

    def __init__(self, active: Operation | None) -> None:
        self.active = active
        if active is None:
            super().__init__("busy: another operation on this container has just started")
            return
        since = timezone.localtime(active.started_at or active.queued_at)
        super().__init__(
            f"busy: operation #{active.pk} ({active.get_kind_display().lower()}) "
            f"is {active.get_status_display().lower()} since {since:%H:%M}"
        )


def request_operation(
    instance: Instance, kind: str, user, params: dict | None = None, **fields
) -> Operation:
    """Create the pending Operation and enqueue it, or raise Busy naming the active one.

    The partial unique index `one_active_operation_per_instance` is the real guard: two
    requests racing past the check still cannot both insert.
    """
    try:
        with transaction.atomic():
            active = Operation.objects.active().filter(instance=instance).first()
            if active is not None:
                raise Busy(active)
            operation = Operation.objects.create(
                kind=kind,
                instance=instance,
                instance_name=instance.name,
                source_host=instance.host,
                requested_by=user if user and user.is_authenticated else None,
                params=params or {},
                **fields,
            )
            operation.log(f"Requested by {user}.", "queued")
            transaction.on_commit(lambda: send(operation))
    except IntegrityError:
        raise Busy(Operation.objects.active().filter(instance=instance).first()) from None
    return operation


def send(operation: Operation) -> None:
    """Enqueue the operation's job. If Redis does not answer, the row stays pending and says
    so; the reconciler sends it again once the queue is back (docs/operations.md)."""
    task = run_migration_operation if operation.kind in MIGRATION_KINDS else run_operation
    try:
        task.delay(operation.pk)
    except QueueUnavailable as error:
        logger.warning("operation %s: job queue unreachable: %s", operation.pk, error)
        minutes = settings.RECONCILE_SILENT_SECONDS // 60 + 1
        operation.log(
            f"The job queue (Redis at {broker_address()}) did not answer, so no worker has "
            f"this yet. It stays queued: the panel sends it again by itself, about {minutes} "
            "minutes after it was asked, or within a minute of Redis coming back if that is "
            "later. Cancel it if it should not run then.",
            "queued",
        )
