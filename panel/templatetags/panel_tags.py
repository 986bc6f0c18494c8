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
    from panel.operations.strategy import LABELS

    return LABELS.get(strategy, strategy.replace("_", " "))


@register.filter
def aftercare_role(role: str) -> str:
    """What the aftercare does on a host once it answers (panel/operations/aftercare.py)."""
    return {
        "home": "check the container there",
        "stray": "remove the copy the operation left",
        "left behind": "remove the source copy once the container is verified",
        "decide": "keep the copy that runs, remove the other",
    }.get(role, role)


@register.simple_tag
def phase_steps(operation) -> list:
    """The stepper of an operation's known phases. An active one needs no query (its stage
    says where it is); an ended one reads which stages its log entered, to mark where it
    stopped."""
    from panel.models import OperationEvent
    from panel.operations.phases import steps
    from panel.rows import distinct_values

    seen: frozenset[str] = frozenset()
    if not operation.is_active:  # one prepared statement: an ended card's last poll reads it
        seen = frozenset(distinct_values(OperationEvent, "stage", "operation", operation.pk))
    return steps(operation, seen)


@register.filter
def transfer(text: str):
    """LXD's progress text as bytes moved and their rate (None when it states neither)."""
    from panel.lxd import Transfer

    parsed = Transfer.parse(text)
    return parsed if parsed.bytes is not None or parsed.bytes_per_second is not None else None


@register.filter
def si_bytes(count: int | None) -> str:
    """Bytes in LXD's own units (powers of 1000, as its progress text), e.g. '120.0 MB'."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@register.inclusion_tag("panel/_taskbar.html", takes_context=True)
def taskbar(context) -> dict:
    """The task bar as a page first shows it: counts now, toasts from the next poll on."""
    from panel.web.views.taskbar import taskbar_context

    return taskbar_context(context["request"].user, since=None)


@register.filter
def pairs(mapping: dict | None) -> list[tuple]:
    """A dict's items for a template loop (none for a missing one): `mapping.items` would
    look up a key named "items" first (a maintenance plan's schema has one)."""
    return list(mapping.items()) if mapping else []


@register.filter
def schema_type(schema: dict) -> str:
    """A JSON Schema in a few words for the API's docs page: 'integer | null',
    'array of Operation', 'Operation'."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(schema_type(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {schema_type(schema['additionalProperties'])}"
    words = " | ".join(kind) if isinstance(kind, list) else kind
    if "enum" in schema:
        words += ": " + ", ".join(repr(value) for value in schema["enum"])
    return words
