"""What the operation and container pages show of bug bundles (read from the database only)."""

from __future__ import annotations

from django import template

from panel.models import Bundle

register = template.Library()


@register.simple_tag
def bundles_of(operation=None, instance=None, limit: int = 5) -> list[Bundle]:
    found = (
        Bundle.objects.filter(operation=operation)
        if operation
        else Bundle.objects.filter(instance=instance)
    )
    return list(found[:limit])


@register.filter
def checkpoints_of(bundles: list[Bundle]) -> list[dict]:
    """The checkpoint listings of the newest bundle that has any."""
    for bundle in bundles:
        if bundle.manifest.get("checkpoints"):
            return bundle.manifest["checkpoints"]
    return []


@register.filter
def collecting(bundles: list[Bundle]) -> bool:
    """Is any of these bundles still being collected (so the page should look again)?"""
    return any(bundle.status == Bundle.Status.COLLECTING for bundle in bundles)
