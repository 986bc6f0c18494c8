"""Scheduled stateful snapshots: beat asks every minute which schedules are due."""

from __future__ import annotations

from django.utils import timezone

from panel.maintenance.mode import closed_because
from panel.operations.models import Operation, SnapshotSchedule
from panel.operations.requests import Busy, request_operation


def run_due_schedules() -> int:
    """Queue one stateful-snapshot Operation per due schedule; returns how many were queued."""
    now = timezone.now()
    queued = 0
    due = SnapshotSchedule.objects.filter(enabled=True, next_run_at__lte=now)
    for schedule in due.select_related("instance__host"):
        schedule.last_note = queue_scheduled_snapshot(schedule, now)
        queued += schedule.last_note.startswith("Queued")
        schedule.advance(now)
        schedule.save(update_fields=["last_operation", "last_note", "next_run_at"])
    return queued


def queue_scheduled_snapshot(schedule: SnapshotSchedule, now) -> str:
    instance = schedule.instance
    if instance.gone_at is not None:
        return f"Skipped at {now:%H:%M}: the container is gone from its host."
    closed = closed_because(instance.host)
    if closed:
        return f"Paused at {now:%H:%M}: {closed}"
    if instance.status != "Running":
        return f"Skipped at {now:%H:%M}: the container is {instance.status.upper()}, not RUNNING."
    params = {"snapshot": f"{schedule.PREFIX}{now:%Y%m%d-%H%M%S}", "keep": schedule.keep}
    try:
        operation = request_operation(instance, Operation.Kind.STATEFUL_SNAPSHOT, None, params)
    except Busy as busy:
        return f"Skipped at {now:%H:%M}: {busy}."
    schedule.last_operation = operation
    return f"Queued operation #{operation.pk} at {now:%H:%M}."
