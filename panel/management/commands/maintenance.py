"""A host's maintenance from a shell (docs/operations.md, "Host maintenance"), with the web's
and the API's rules: the maintenance mode, a plan, its confirmation, and following it.

    manage.py maintenance set USER HOST --reason "kernel update"
    manage.py maintenance clear USER HOST
    manage.py maintenance plan USER HOST checkpoint|evacuate|bring_back [--policy stop]
                               [--target NAME=HOST ...] [--skip NAME ...] [--wait]
    manage.py maintenance show PLAN
    manage.py maintenance confirm USER PLAN [--wait]
"""

from __future__ import annotations

import time

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from panel.maintenance.parent import live_rows
from panel.maintenance.requests import (
    Busy,
    PlanRefused,
    clear_mode,
    confirm_plan,
    request_plan,
    set_mode,
)
from panel.management.commands.panel import acting_as, add_wait, refuse_unless_valid, summary
from panel.models import Host, MaintenancePlan, Operation
from panel.web.access import get_host, get_plan
from panel.web.forms import MaintenanceModeForm, MaintenancePlanForm


class Command(BaseCommand):
    help = (
        "A host's maintenance mode; plan, confirm and follow its checkpoint, evacuation or "
        "bring back."
    )

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        mode = actions.add_parser("set", help="Put HOST in maintenance mode, as USER (admin).")
        mode.add_argument("user")
        mode.add_argument("host")
        mode.add_argument("--reason", required=True)
        clear = actions.add_parser("clear", help="Take HOST out of maintenance mode (admin).")
        clear.add_argument("user")
        clear.add_argument("host")
        plan = actions.add_parser("plan", help="Ask for a plan (nothing starts), as USER.")
        plan.add_argument("user")
        plan.add_argument("host")
        plan.add_argument("mode", choices=MaintenancePlan.Mode.values)
        plan.add_argument("--policy", default="stop", choices=MaintenancePlan.Policy.values)
        plan.add_argument("--target", action="append", default=[], metavar="NAME=HOST")
        plan.add_argument("--skip", action="append", default=[], metavar="NAME")
        add_wait(plan)
        show = actions.add_parser("show", help="A plan, container by container.")
        show.add_argument("plan", type=int)
        confirm = actions.add_parser("confirm", help="Start a drawn-up plan, as USER.")
        confirm.add_argument("user")
        confirm.add_argument("plan", type=int)
        add_wait(confirm)

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, action)(**options)
        except PermissionDenied as denied:
            raise CommandError(f"Refused: {denied}") from None
        except Http404:
            raise CommandError("Not found.") from None
        except (PlanRefused, Busy) as refused:
            raise CommandError(f"Not started: {refused}") from None

    def set(self, user: str, host: str, reason: str, **options) -> None:
        request = acting_as(user)
        found = get_host(request, host_pk(host), manage=True)
        form = MaintenanceModeForm({"reason": reason})
        refuse_unless_valid(form)
        flag = set_mode(found, request.user, form.cleaned_data["reason"])
        self.stdout.write(flag.describe())

    def clear(self, user: str, host: str, **options) -> None:
        request = acting_as(user)
        found = get_host(request, host_pk(host), manage=True)
        cleared = clear_mode(found, request.user)
        self.stdout.write(f"{found.name} {'is out of' if cleared else 'was not in'} maintenance.")

    def plan(self, user, host, mode, policy, target, skip, wait, timeout, **options) -> None:
        request = acting_as(user)
        found = get_host(request, host_pk(host), operate=True)
        data: dict = {"mode": mode, "policy": policy}
        for choice in target:
            name, _, where = choice.partition("=")
            data[f"target:{name}"] = where
        data.update({f"skip:{name}": True for name in skip})
        names = MaintenancePlanForm.names_in(data)
        names |= set(found.instances.present().values_list("name", flat=True))
        form = MaintenancePlanForm(data, host=found, names=sorted(names))
        refuse_unless_valid(form)
        plan = request_plan(found, mode, request.user, policy, form.choices())
        self.stdout.write(f"plan #{plan.pk}: {plan.get_mode_display().lower()} {found.name}")
        deadline = time.monotonic() + timeout
        while wait and plan.state == "drawing":
            if time.monotonic() > deadline:
                raise CommandError(f"plan #{plan.pk} still being drawn up after {timeout:.0f} s.")
            time.sleep(0.5)
            plan = MaintenancePlan.objects.select_related("preflight").get(pk=plan.pk)
        if wait:
            self.show(plan.pk)

    def show(self, plan: int, **options) -> None:
        found = MaintenancePlan.objects.select_related("preflight").filter(pk=plan).first()
        if found is None:
            raise CommandError(f"There is no plan #{plan}.")
        self.stdout.write(f"plan #{found.pk} {found.mode} {found.host.name}: {found.state}")
        if found.state == "failed" and found.preflight is not None:
            raise CommandError(f"plan #{found.pk} failed: {found.preflight.outcome}")
        self.stdout.write(found.summary)
        for item in found.items:
            where = f" -> {item['target']} ({item['strategy']})" if item["target"] else ""
            seconds = item["expected_downtime"]
            expected = f", expected {seconds:.2f} s down" if seconds is not None else ""
            self.stdout.write(f"  {item['name']}\t{item['fate']}{where}{expected}")
            for problem in item["problems"]:
                self.stdout.write(f"    cannot: {problem}")

    def confirm(self, user: str, plan: int, wait: bool, timeout: float, **options) -> None:
        request = acting_as(user)
        parent = confirm_plan(get_plan(request, plan, operate=True), request.user)
        self.stdout.write(summary(parent))
        deadline = time.monotonic() + timeout
        while wait and parent.is_active:
            if time.monotonic() > deadline:
                raise CommandError(f"#{parent.pk} still {parent.status} after {timeout:.0f} s.")
            time.sleep(1)
            parent.refresh_from_db()
            self.stdout.write(f"  {parent.progress_text}".rstrip())
        if not wait:
            return
        for row in live_rows(parent):
            self.stdout.write(f"  {row['name']}\t{row['status']}\t{row['where']}")
        self.stdout.write(summary(parent))
        if parent.status != Operation.Status.SUCCEEDED:
            raise CommandError(f"#{parent.pk} {parent.status}: {parent.outcome}")


def host_pk(name: str) -> int:
    pk = Host.objects.filter(name=name).values_list("pk", flat=True).first()
    if pk is None:
        raise CommandError(f"There is no host named {name!r}.")
    return pk
