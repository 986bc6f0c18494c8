"""What an operation's page shows of its failure group (read from the database only)."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

from panel.models import GroupedFailure, Operation

register = template.Library()
# A failure is grouped as its ending commits; a page that came a moment earlier looks again
# for this long (an old failure from before groups existed is grouped by `failures group`).
GROUPING_GRACE = dt.timedelta(seconds=60)


@register.simple_tag
def failure_of(operation: Operation) -> GroupedFailure | None:
    return GroupedFailure.objects.select_related("group").filter(operation=operation).first()


@register.simple_tag
def grouping_pending(operation: Operation) -> bool:
    """Did it just fail, so that its group is a moment away?"""
    ended = operation.finished_at
    failed = operation.status in (Operation.Status.FAILED, Operation.Status.INTERRUPTED)
    return failed and ended is not None and timezone.now() - ended < GROUPING_GRACE
