from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def ns_as_seconds(nanoseconds: int) -> str:
    """CPU time as `lxc info` shows it: whole seconds."""
    return f"{int(nanoseconds or 0) // 1_000_000_000}s"


@register.filter
def status_class(status: str) -> str:
    """A CSS class for an instance status; the status word is always shown beside it."""
    return (status or "unknown").lower()


@register.filter
def seconds(duration) -> str:
    """A timedelta as '12.3 s' or '4 min 05 s'."""
    total = duration.total_seconds()
    if total < 60:
        return f"{total:.1f} s"
    minutes, rest = divmod(int(total), 60)
    return f"{minutes} min {rest:02d} s"


@register.filter
def strategy_label(strategy: str) -> str:
    """'stateful_move' -> 'checkpoint, move, restore', as the strategy is called everywhere."""
    from panel.strategy import LABELS

    return LABELS.get(strategy, strategy.replace("_", " "))
