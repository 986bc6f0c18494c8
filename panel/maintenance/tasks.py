"""The maintenance domain's Celery tasks, sent by name (panel/operations/kinds.py,
panel/operations/lifecycle.py): draw up a plan, start a parent, move a parent on, and the
parent's bundle."""

from __future__ import annotations

from panel.maintenance import bundle, gather, parent
from panel.operations.runner import run
from workers.celery import app


@app.task
def draw_up_plan(operation_id: int) -> None:
    run(operation_id, gather.draw_up, draw_up_plan)


@app.task
def start_maintenance(operation_id: int) -> None:
    parent.start(operation_id)


@app.task
def advance_maintenance(operation_id: int) -> None:
    parent.advance(operation_id)


@app.task
def collect_maintenance_bundle(operation_id: int) -> None:
    """The parent's one bundle, gathering its failed children's: built once they are
    ready, or sent again a little later (bounded: bundle.WAIT_SECONDS)."""
    if not bundle.collect(operation_id):
        collect_maintenance_bundle.apply_async((operation_id,), countdown=bundle.RETRY_SECONDS)
