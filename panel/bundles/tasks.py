"""The bundles domain's Celery tasks: build a requested bundle, or the automatic one of a
failed operation, and delete old ones."""

from __future__ import annotations

from panel.bundles.models import Bundle
from panel.bundles.requests import automatic_bundle, delete_old_bundles
from panel.bundles.runs import build_claimed, claim_bundle, reconcile_bundles
from workers.celery import app


@app.task
def collect_bundle(bundle_id: int) -> None:
    """Build a bundle that is still collecting, unless another worker is building it right
    now: a redelivered or duplicated job finishes (or rebuilds) the same bundle, never two."""
    if claim_bundle(bundle_id):
        build_claimed(bundle_id)


@app.task
def collect_operation_bundle(operation_id: int) -> None:
    """The automatic bundle of a failed or interrupted operation (one per operation: the
    database says so); a redelivered job builds the same one if it is still collecting."""
    bundle = automatic_bundle(operation_id)
    if bundle is not None and bundle.status == Bundle.Status.COLLECTING:
        collect_bundle(bundle.pk)


@app.task
def reconcile_bundles_task() -> None:
    reconcile_bundles()


@app.task
def delete_old_bundles_task() -> None:
    delete_old_bundles()
