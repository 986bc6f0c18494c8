"""The operations domain's Celery tasks: each loads its Operation by id and hands it to the
runner with its work function. Sent by name (panel/operations/kinds.py says which)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from panel.operations import contact, container, gather, migration, reconciler, schedules, stuck
from panel.operations.cleanup import delete_copy
from panel.operations.models import Operation
from panel.operations.runner import run
from workers.celery import app

logger = logging.getLogger(__name__)
Kind = Operation.Kind

# The work function of each kind, on the task that runs it (kinds.task_for).
CONTAINER_WORK = {**container.WORK, Kind.RELEASE_DUMP: stuck.free_from_dump}
MIGRATION_WORK: dict[str, Callable[[Operation], str]] = {
    Kind.PREFLIGHT: gather.preflight,
    Kind.MIGRATE: migration.migrate,
    Kind.DELETE_COPY: delete_copy,
}


@app.task
def run_operation(operation_id: int) -> None:
    kind = Operation.objects.filter(pk=operation_id).values_list("kind", flat=True).first()
    if kind is not None:
        run(operation_id, CONTAINER_WORK[kind], run_operation, contact.after_lost_contact)


@app.task
def run_migration_operation(operation_id: int) -> None:
    kind = Operation.objects.filter(pk=operation_id).values_list("kind", flat=True).first()
    if kind is not None:
        run(operation_id, MIGRATION_WORK[kind], run_migration_operation, contact.after_lost_contact)


@app.task
def run_due_schedules_task() -> None:
    queued = schedules.run_due_schedules()
    if queued:
        logger.info("queued %s scheduled stateful snapshots", queued)


@app.task
def reconcile_task() -> None:
    reconciler.reconcile()
