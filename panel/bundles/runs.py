"""A bundle's build, as a job that may be delivered twice or die half-way.

A worker claims a collecting bundle before it builds it (one conditional UPDATE on
`claimed_at`): a duplicated job finds it claimed and does nothing, and a job redelivered after
its worker died finds the claim stale (PANEL_BUNDLE_STALE_SECONDS) and builds the same bundle
again, replacing any half-written file. The bundle reconciler (beat, every minute) ends a
bundle that nobody finished, so its page says so and it can be collected again, and asks
for the automatic bundle of a failed operation whose job the queue never took.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from panel import broker
from panel.bundles.collect import build_or_record_failure
from panel.bundles.models import Bundle
from panel.operations.models import Operation

logger = logging.getLogger(__name__)
COLLECT_OPERATION_BUNDLE = "panel.bundles.tasks.collect_operation_bundle"
COLLECT_MAINTENANCE_BUNDLE = "panel.maintenance.tasks.collect_maintenance_bundle"
MISSING_BUNDLE_LOOKBACK = dt.timedelta(days=1)


def stale_before() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.BUNDLE_STALE_SECONDS)


def claim_bundle(bundle_id: int) -> bool:
    """Take a collecting bundle that no worker is building now (never claimed, or claimed so
    long ago that its worker must have died)."""
    unclaimed = Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale_before())
    won = (
        Bundle.objects.filter(pk=bundle_id, status=Bundle.Status.COLLECTING)
        .filter(unclaimed)
        .update(claimed_at=timezone.now())
    )
    return bool(won)


def build_claimed(bundle_id: int) -> None:
    bundle = (
        Bundle.objects.select_related(
            "operation__source_host", "operation__target_host", "instance__host"
        )
        .filter(pk=bundle_id)
        .first()
    )
    if bundle is not None:  # deleted meanwhile
        build_or_record_failure(bundle)


def reconcile_bundles() -> tuple[int, int]:
    """(bundles ended, automatic bundles asked for again)."""
    stale = stale_before()
    abandoned = Bundle.objects.filter(status=Bundle.Status.COLLECTING).filter(
        Q(claimed_at__lt=stale) | Q(claimed_at__isnull=True, created_at__lt=stale)
    )
    ended = 0
    for bundle in abandoned:
        since = timezone.localtime(bundle.claimed_at or bundle.created_at)
        ended += Bundle.objects.filter(
            pk=bundle.pk, status=Bundle.Status.COLLECTING, claimed_at=bundle.claimed_at
        ).update(
            status=Bundle.Status.FAILED,
            finished_at=timezone.now(),
            error=(
                f"The worker building this bundle stopped before it finished (collecting since "
                f"{since:%H:%M:%S}). Nothing is lost: collect it again, which makes a new one."
            ),
        )
    return ended, ask_for_missing_bundles()


def ask_for_missing_bundles() -> int:
    """Failed operations of the last day without their automatic bundle: the job that asks
    for it was lost (the queue was down when the operation ended). A maintenance's bundle
    gathers its children's; a maintenance plan changed nothing and has none."""
    since = timezone.now() - MISSING_BUNDLE_LOOKBACK
    missing = (
        Operation.objects.filter(
            status__in=(Operation.Status.FAILED, Operation.Status.INTERRUPTED),
            finished_at__gte=since,
        )
        .exclude(bundles__automatic=True)
        .exclude(kind=Operation.Kind.MAINTENANCE_PLAN)
        .values_list("pk", "kind")
    )
    asked = 0
    for operation_id, kind in missing:
        maintenance = kind == Operation.Kind.MAINTENANCE
        try:
            broker.send(COLLECT_MAINTENANCE_BUNDLE if maintenance else COLLECT_OPERATION_BUNDLE,
                        operation_id)  # fmt: skip
        except broker.QueueUnavailable as error:
            logger.warning("could not ask for the bundle of operation %s: %s", operation_id, error)
            break
        asked += 1
    return asked
