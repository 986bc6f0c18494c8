"""Failure groups from a shell (docs/failures.md): list and show them; as a given user, set a
group's status, its upstream bug or its note, and print its pre-filled new-issue links.
The same access helper, forms and request functions as the web and the API, so a viewer is
refused here too; every change lands on the audit trail under the user's name."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from panel.failures import requests
from panel.failures.filing import filings
from panel.failures.grouping import ENDED_BADLY, group_failure
from panel.management.commands.panel import acting_as, shell_filtered
from panel.models import FailureGroup, Operation
from panel.web.access import get_failure_group
from panel.web.filters import FailureFilter
from panel.web.forms import FailureNoteForm, FailureStatusForm, UpstreamForm

READERS = {"list": "listing", "show": "show", "file": "file", "group": "group"}
CHANGES = {
    "status": (FailureStatusForm, "status", requests.set_status),
    "upstream": (UpstreamForm, "url", requests.set_upstream),
    "note": (FailureNoteForm, "note", requests.set_note),
}


class Command(BaseCommand):
    help = "Failure groups: list, show, set status / upstream bug / note, print filing links."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Groups, newest failure first.")
        listing.add_argument("--status", default="", help="new, filed, fixed, ignored or all.")
        listing.add_argument("--host", default="")
        listing.add_argument("--kind", default="")
        listing.add_argument("--limit", type=int, default=20)
        show = actions.add_parser("show", help="One group: where, what, its operations.")
        show.add_argument("group", type=int)
        for action, (form, field, _) in CHANGES.items():
            change = actions.add_parser(action, help=f"Set a group's {field} as USER.")
            change.add_argument("user", help="Act as this user, with their role.")
            change.add_argument("group", type=int)
            change.add_argument("value", help=str(form.base_fields[field].help_text or field))
        actions.add_parser("group", help="Group every failure not in a group yet (older ones).")
        file = actions.add_parser("file", help="Print the pre-filled new-issue links as USER.")
        file.add_argument("user")
        file.add_argument("group", type=int)

    def handle(self, *args, action: str, **options) -> None:
        try:
            if action in CHANGES:
                self.change(action, **options)
            else:
                reader: Callable[..., None] = getattr(self, READERS[action])
                reader(**options)
        except PermissionDenied as denied:
            raise CommandError(f"Refused: {denied}") from None
        except Http404:
            raise CommandError(f"There is no failure group #{options.get('group')}.") from None

    def listing(self, limit: int, **wanted) -> None:
        for group in shell_filtered(FailureFilter, wanted, FailureGroup.objects.all())[:limit]:
            self.stdout.write(
                f"#{group.pk}\t{group.status}\t{group.count}\t{group.last_seen:%Y-%m-%d %H:%M}"
                f"\t{','.join(group.hosts)}\t{group.title}"
            )

    def show(self, group: int, **options) -> None:
        found = get_failure_group(None, group)
        self.stdout.write(f"#{found.pk} {found.title}")
        by = found.status_by_name or "the panel"
        self.stdout.write(f"  status: {found.status} (by {by}, {found.status_at:%Y-%m-%d %H:%M})")
        if found.status_reason:
            self.stdout.write(f"  {found.status_reason}")
        self.stdout.write(f"  seen {found.count} time(s), {found.first_seen:%Y-%m-%d %H:%M} to "
                          f"{found.last_seen:%Y-%m-%d %H:%M}")  # fmt: skip
        for name, facts in found.hosts.items():
            self.stdout.write(f"  host {name}: {facts['platform']}, CRIU {facts['criu'] or '?'},"
                              f" {facts['count']} failure(s)")  # fmt: skip
        for key, value in found.signature.items():
            self.stdout.write(f"  {key}: {value}")
        self.stdout.write(f"  already reported: {found.upstream_url or '(not yet)'}")
        if found.note:
            self.stdout.write(f"  note ({found.note_by_name}): {found.note}")
        operations: list[Operation] = list(found.operations()[:20])
        for op in operations:
            ended = f"{op.finished_at:%Y-%m-%d %H:%M:%S}" if op.finished_at else ""
            self.stdout.write(f"  operation #{op.pk}\t{op.status}\t{op.instance_name}\t{ended}")

    def change(self, action: str, user: str, group: int, value: str, **options) -> None:
        request = acting_as(user)
        found = get_failure_group(request, group, change=True)
        form_class, field, change = CHANGES[action]
        form = form_class({field: value})
        if not form.is_valid():
            errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
            raise CommandError(f"Not saved: {errors}")
        change(found, form.cleaned_data[field], request.user)
        self.show(found.pk)

    def group(self, **options) -> None:
        """Failures from before failure groups existed (or whose grouping was lost), oldest
        first, so each group's first and last seen come out right."""
        ungrouped = Operation.objects.filter(status__in=ENDED_BADLY, failure__isnull=True)
        count = 0
        for pk in ungrouped.order_by("finished_at", "pk").values_list("pk", flat=True):
            count += group_failure(pk) is not None
        self.stdout.write(f"Grouped {count} failure(s).")

    def file(self, user: str, group: int, **options) -> None:
        found = get_failure_group(acting_as(user), group, change=True)
        for filing in filings(found):
            trimmed = " (report trimmed: attach the bundle)" if filing.trimmed else ""
            self.stdout.write(f"{filing.tracker.name}{trimmed}:\n{filing.url}\n")
