"""What the team says about a failure group, from the web, the API or the shell: its status,
its upstream bug, its note. Each change records who and when on the group and lands on the
audit trail with the exact change (the request middleware records the request itself; a
shell command has no request, so this is its only record). Values are validated by the
forms in panel/web/forms.py before they get here."""

from __future__ import annotations

from django.utils import timezone

from panel.accounts.audit import audit
from panel.accounts.models import AuditEvent
from panel.failures.models import FailureGroup
from panel.redaction import policy


def _record(request, user, group: FailureGroup, action: str, detail: str) -> None:
    audit(request, action, AuditEvent.Outcome.OK, "failuregroup", str(group.pk), str(group),
          detail, username=user.get_username())  # fmt: skip


def set_status(group: FailureGroup, status: str, user, request=None) -> None:
    before = group.get_status_display()
    _set_status(group, status, user, timezone.now())
    group.save(update_fields=STATUS_FIELDS)
    _record(request, user, group, "failure.status", f"{before} -> {group.get_status_display()}")


STATUS_FIELDS = ["status", "status_reason", "status_by", "status_by_name", "status_at"]


def _set_status(group: FailureGroup, status: str, user, at) -> None:
    group.status, group.status_reason, group.status_at = status, "", at
    group.status_by, group.status_by_name = user, user.get_username()


def set_upstream(group: FailureGroup, url: str, user, request=None) -> None:
    """Record (or clear) the upstream bug. Recording one files a new group."""
    before, now = group.upstream_url, timezone.now()
    group.upstream_url, group.upstream_by_name = url, user.get_username()
    group.upstream_at = now if url else None
    fields = ["upstream_url", "upstream_by_name", "upstream_at"]
    if url and group.status == FailureGroup.Status.NEW:
        _set_status(group, FailureGroup.Status.FILED, user, now)
        fields += STATUS_FIELDS
    group.save(update_fields=fields)
    _record(request, user, group, "failure.upstream", f"{before or '(none)'} -> {url or '(none)'}")


def set_note(group: FailureGroup, note: str, user, request=None) -> None:
    """The note is shown to every viewer and filed upstream: a pasted secret (a password in a
    command line, a token) is redacted before it is kept (panel/redaction.py)."""
    before, note = group.note, policy().text(note)
    group.note, group.note_by_name, group.note_at = note, user.get_username(), timezone.now()
    group.save(update_fields=["note", "note_by_name", "note_at"])
    change = f"was: {before or '(none)'}\nnow: {note or '(none)'}"
    _record(request, user, group, "failure.note", change)
