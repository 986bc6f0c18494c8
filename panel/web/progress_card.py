"""The operation's progress card: the fragment every open operation page polls once a second,
and the same card inside the operation, container and maintenance pages.

Built in Python rather than by a Django template: it is the panel's busiest answer, and the
template engine was over a third of a poll (0.8-1.0 ms of 2.5 ms in process); this builds
the same HTML, checked against the template's before it was removed, in 0.18 ms
(docs/benchmarks.md). Every value is escaped with `_text` (Django's `escape`, without the
lazy-string wrapper of `format_html`, which cost more than the escaping on this path); the
card is marked safe only once it is whole. tests/test_progress_card.py holds its markup and
its escaping of hostile names, stages, progress text, outcomes and errors.

The cancel form carries no CSRF token when polled: htmx submits it with the X-CSRFToken
header every htmx request sends (base.html's hx-headers); a page that shows the card passes
its token in too, for a browser without JavaScript. Asking Django for a token on every poll
cost a masking and a Set-Cookie per answer.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

from django.urls import get_script_prefix, reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from panel.models import Operation
from panel.templatetags.panel_tags import phase_steps, seconds, si_bytes, transfer

# The choices' labels, read without Model.get_FOO_display, which rebuilds a hashable copy
# of every choice on each call (a fifth of the card's time).
KINDS, STATUSES = dict(Operation.Kind.choices), dict(Operation.Status.choices)


def _text(value: object) -> str:
    """`value` as HTML text or attribute value: what Django's escape gives."""
    return escape(str(value), quote=True)


# A primary key no URL prefix holds: each of the card's URLs is reversed once with it, per
# script prefix, and the operation's key put in its place (three reverse() calls were a
# fifth of the card's time, for URLs that differ only by the key).
_PK_MARK = 739581826450173


@lru_cache(maxsize=32)
def _around_pk(name: str, script_prefix: str) -> tuple[str, str]:
    before, _, after = reverse(name, args=[_PK_MARK]).partition(str(_PK_MARK))
    return before, after


def _url(name: str, pk: int) -> str:
    """reverse(name, args=[pk]) for a URL whose one argument is an operation's key."""
    before, after = _around_pk(name, get_script_prefix())
    return f"{before}{int(pk)}{after}"


def progress_card(operation: Operation, *, can_operate: bool, csrf_token: str = "") -> SafeString:
    """The whole <section>; `can_operate` decides the cancel button of an active operation."""
    pk, status = operation.pk, _text(operation.status)
    kind = _text(KINDS.get(operation.kind, operation.kind))
    status_label = _text(STATUSES.get(operation.status, operation.status))
    active = operation.is_active
    polling = ""
    if active:
        url = _text(_url("operation-progress", pk))
        polling = f' hx-get="{url}" hx-trigger="every 1s" hx-swap="outerHTML"'
    body = _active(operation, can_operate, csrf_token) if active else _ended(operation)
    return mark_safe(  # noqa: S308 -- every value above is escaped by _text
        f'<section id="operation-{pk}" class="card progress-card status-{status}"{polling}'
        ' aria-live="polite">\n'
        '  <div class="page-head">\n'
        f'    <h2><a href="{_text(_url("operation-detail", pk))}">#{pk} '
        f"{kind}</a> · {_text(operation.instance_name)}</h2>\n"
        f'    <span class="badge op-{status}">{status_label}</span>\n'
        "  </div>\n"
        f"  <p><strong>Stage:</strong> {_text(operation.stage or 'queued')}\n"
        f"    · <strong>Elapsed:</strong> {_text(_elapsed(operation))}</p>\n"
        f"{_stepper(operation)}{body}</section>"
    )


def _elapsed(operation: Operation) -> str:
    duration = operation.duration
    if duration:  # a zero timedelta too reads as not started, as the template had it
        return seconds(duration)
    waited = timesince(operation.queued_at) if operation.queued_at else ""
    if operation.is_active and operation.stage == "waiting for host":
        return f"waiting for a free slot on its host ({waited})"
    return f"waiting for a worker ({waited})"


CURRENT = ' aria-current="step"'


def _stepper(operation: Operation) -> str:
    steps = phase_steps(operation)
    if not steps:
        return ""
    items = "".join(
        f'<li class="step-{_text(step.state)}"{CURRENT if step.state == "current" else ""}>'
        f'<span class="visually-hidden">{_text(step.state)}: </span>{_text(step.label)}</li>'
        for step in steps
    )
    return f'  <ol class="stepper" aria-label="Phases">\n    {items}\n  </ol>\n'


def _active(operation: Operation, can_operate: bool, csrf_token: str) -> str:
    fraction = operation.progress_fraction
    if fraction is None:
        parts = ['<progress aria-label="Working (no fraction known)"></progress>']
    else:
        parts = [f'<progress max="1" value="{fraction:.3f}" aria-label="Progress">'
                 f"{round(fraction * 100)} %</progress>"]  # fmt: skip
    moved = transfer(operation.progress_text)
    if moved:
        rate = ""
        if moved.bytes_per_second:
            rate = f" at <strong>{_text(si_bytes(moved.bytes_per_second))}/s</strong>"
        parts.append(f'<p class="transfer"><strong>Transferred:</strong> '
                     f"{_text(si_bytes(moved.bytes))}{rate}</p>")  # fmt: skip
    if operation.progress_text:
        servers = f"{operation.server_names}: " if operation.status == "running" else ""
        parts.append(f'<p class="muted">{_text(servers + operation.progress_text)}</p>')
    if can_operate:
        parts.append(_cancel(operation, csrf_token))
    return "".join(f"  {part}\n" for part in parts)


def _cancel(operation: Operation, csrf_token: str) -> str:
    servers = operation.server_names
    if operation.status == Operation.Status.PENDING or operation.may_cancel:
        url = _text(_url("operation-cancel", operation.pk))
        token = ""
        if csrf_token:
            token = f'<input type="hidden" name="csrfmiddlewaretoken" value="{_text(csrf_token)}">'
        return (f'<form method="post" action="{url}" hx-post="{url}">{token}'
                '<button type="submit" class="danger">Cancel</button></form>')  # fmt: skip
    why = f"{servers} does not allow it"
    if operation.cancel_requested:
        why += f" (cancel was requested; it applies as soon as {servers} allows)"
    return f'<p class="muted">This step cannot be cancelled: {_text(why)}.</p>'


def _ended(operation: Operation) -> str:
    outcome = f'  <p class="outcome" role="status">{_text(operation.outcome)}</p>\n'
    if not operation.error:
        return outcome
    servers, error = _text(operation.server_names), _text(operation.error)
    return (f"{outcome}  <details open><summary>The error as {servers} gave it</summary>"
            f'<pre class="log">{error}</pre></details>\n')  # fmt: skip
