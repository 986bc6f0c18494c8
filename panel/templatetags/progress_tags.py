"""{% progress_card operation %}: the operation's progress card inside a page. A library
of its own because the card (panel/web/progress_card.py) uses panel_tags' filters."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from panel.web.progress_card import progress_card as card

register = template.Library()


@register.simple_tag(takes_context=True)
def progress_card(context, operation) -> SafeString:
    """With the page's `can_operate` and its CSRF token in the cancel form."""
    return card(operation, can_operate=bool(context.get("can_operate")),
                csrf_token=str(context.get("csrf_token", "")))  # fmt: skip
