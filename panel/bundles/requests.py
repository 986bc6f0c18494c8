"""Asking for a bundle from the request side (the web, the API, the shell): the row first,
the job sent by name after commit."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from panel import broker
from panel.bundles.models import Bundle
from panel.hosts.models import Instance
from panel.operations.models import Operation

COLLECT_BUNDLE = "panel.bundles.tasks.collect_bundle"


def request_bundle(
    user, operation: Operation | None = None, instance: Instance | None = None
) -> Bundle:
    """A bundle on demand; a bundle still collecting for the same thing is reused."""
    subject = {"operation": operation} if operation else {"instance": instance, "operation": None}
    existing = Bundle.objects.filter(status=Bundle.Status.COLLECTING, **subject).first()
    if existing is not None:
        return existing
    if operation is not None:
        name = operation.instance_name
    elif instance is not None:
        name = instance.name
    else:
        raise TypeError("request_bundle() needs an operation or an instance")
    bundle = Bundle.objects.create(
        instance=instance or (operation.instance if operation else None),
        instance_name=name, requested_by=user, **({"operation": operation} if operation else {})
    )  # fmt: skip
    broker.send_on_commit(COLLECT_BUNDLE, bundle.pk)
    return bundle


def automatic_bundle(operation_id: int) -> Bundle | None:
    """The operation's automatic bundle, made now if it has none yet (None: no operation).
    The unique constraint makes two racing jobs share one row."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None:
        return None
    try:
        with transaction.atomic():
            bundle, _ = Bundle.objects.get_or_create(
                operation=operation,
                automatic=True,
                defaults={"instance": operation.instance, "instance_name": operation.instance_name},
            )
    except IntegrityError:
        bundle = Bundle.objects.get(operation=operation, automatic=True)
    return bundle


def delete_old_bundles(now: dt.datetime | None = None) -> int:
    """Bundles past PANEL_BUNDLE_RETENTION_DAYS, their files included (beat, every 6 h)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.BUNDLE_RETENTION_DAYS)
    old = list(Bundle.objects.filter(created_at__lt=cutoff))
    for bundle in old:
        if bundle.file:
            bundle.file.delete(save=False)
        bundle.delete()
    return len(old)
