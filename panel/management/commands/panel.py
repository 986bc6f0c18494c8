"""The API's abilities from a shell (docs/api.md): list, start an operation or a migration as
a given user, follow it, cancel it, collect a bundle.

Every action acting for a user goes through the same access helpers, forms and request
functions as the web and the API, so a viewer is refused here too.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.http import Http404

from panel.access import get_instance, get_operation
from panel.forms import EXPIRY_CHOICES, STRATEGY_CHOICES, MigrationForm, OperationForm
from panel.migration_requests import StrategyRefused, migration_fields, request_cancel
from panel.models import Bundle, Host, Instance, Operation
from panel.operations import Busy, request_operation
from workers.bundles import request_bundle


class Command(BaseCommand):
    help = "List hosts, containers and operations; run, follow and cancel operations; bundles."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("hosts", help="Every host with its status and capabilities.")
        containers = actions.add_parser("containers", help="Present containers.")
        containers.add_argument("--host", default="")
        containers.add_argument("--state", default="")
        containers.add_argument("--q", default="", help="Part of the name.")
        operations = actions.add_parser("operations", help="Operations, newest first.")
        for name in ("host", "container", "kind", "status", "user"):
            operations.add_argument(f"--{name}", default="")
        operations.add_argument("--limit", type=int, default=20)
        show = actions.add_parser("show", help="One operation and its timeline.")
        show.add_argument("operation", type=int)
        add_wait(show)
        run = actions.add_parser("run", help="Start an operation on HOST's CONTAINER as USER.")
        add_subject(run)
        run.add_argument("kind", choices=Operation.Kind.values)
        run.add_argument("--snapshot", default="")
        run.add_argument("--expires-in", default="", choices=[c for c, _ in EXPIRY_CHOICES])
        run.add_argument("--restore-mode", default="", choices=["", "stateful", "filesystem"])
        add_wait(run)
        migrate = actions.add_parser("migrate", help="Check, or migrate, a container as USER.")
        add_subject(migrate)
        migrate.add_argument("target", help="The target host's name.")
        migrate.add_argument("--check", action="store_true", help="Only the pre-flight checks.")
        migrate.add_argument("--new-name", default="")
        migrate.add_argument("--pool", default="")
        migrate.add_argument("--strategy", default="auto", choices=[c for c, _ in STRATEGY_CHOICES])
        migrate.add_argument("--keep-source", action="store_true")
        add_wait(migrate)
        cancel = actions.add_parser("cancel", help="Cancel an operation as USER.")
        cancel.add_argument("user")
        cancel.add_argument("operation", type=int)
        bundle = actions.add_parser("bundle", help="Collect a bug bundle as USER.")
        bundle.add_argument("user")
        subject = bundle.add_mutually_exclusive_group(required=True)
        subject.add_argument("--operation", type=int)
        subject.add_argument("--container", metavar="HOST/NAME")
        add_wait(bundle)

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, action)(**options)
        except PermissionDenied as denied:
            raise CommandError(f"Refused: {denied}") from None
        except Http404:
            raise CommandError("Not found.") from None

    def hosts(self, **options) -> None:
        for host in Host.objects.all():
            can = ", ".join(f"{c.key}={c.state}" for c in host.capabilities)
            self.stdout.write(
                f"{host.pk}\t{host.name}\t{host.status}\t{host.server_version}\t{can}"
            )

    def containers(self, host: str, state: str, q: str, **options) -> None:
        instances = Instance.objects.present().select_related("host").order_by("name")
        if host:
            instances = instances.filter(host__name=host)
        if state:
            instances = instances.filter(status=state)
        if q:
            instances = instances.filter(name__icontains=q)
        for instance in instances:
            self.stdout.write(
                f"{instance.pk}\t{instance.host.name}\t{instance.name}\t{instance.status}"
            )

    def operations(self, limit: int, **wanted) -> None:
        operations = Operation.objects.select_related("source_host", "requested_by")
        if wanted["host"]:
            operations = operations.filter(
                Q(source_host__name=wanted["host"]) | Q(target_host__name=wanted["host"])
            )
        for field, value in (
            ("instance_name", wanted["container"]),
            ("kind", wanted["kind"]),
            ("status", wanted["status"]),
            ("requested_by__username", wanted["user"]),
        ):
            if value:
                operations = operations.filter(**{field: value})
        for operation in operations[:limit]:
            self.stdout.write(summary(operation))

    def show(self, operation: int, wait: bool, timeout: float, **options) -> None:
        found = Operation.objects.filter(pk=operation).first()
        if found is None:
            raise CommandError(f"There is no operation #{operation}.")
        self.follow(found, wait, timeout, timeline=True)

    def run(self, user, host, container, kind, wait, timeout, **options) -> None:
        request = acting_as(user)
        instance = get_instance(request, find_container(host, container).pk, operate=True)
        fields = {
            "kind": kind,
            "snapshot": options["snapshot"],
            "expires_in": options["expires_in"],
            "restore_mode": options["restore_mode"],
        }
        form = OperationForm(fields, instance=instance)
        refuse_unless_valid(form)
        operation = start(instance, kind, request.user, params=form.params())
        self.follow(operation, wait, timeout)

    def migrate(self, user, host, container, target, wait, timeout, **options) -> None:
        request = acting_as(user)
        instance = get_instance(request, find_container(host, container).pk, operate=True)
        target_pk = Host.objects.filter(name=target).values_list("pk", flat=True).first()
        fields = {
            "target": target_pk,
            "new_name": options["new_name"],
            "pool": options["pool"],
            "strategy": options["strategy"],
            "keep_source": options["keep_source"],
        }
        form = MigrationForm(fields, instance=instance)
        refuse_unless_valid(form)
        kind = Operation.Kind.PREFLIGHT if options["check"] else Operation.Kind.MIGRATE
        try:
            fields = migration_fields(instance, form, resolve=kind == Operation.Kind.MIGRATE)
        except StrategyRefused as refused:
            raise CommandError(f"Not started: {refused}") from None
        operation = start(instance, kind, request.user, **fields)
        self.follow(operation, wait, timeout)

    def cancel(self, user: str, operation: int, **options) -> None:
        request = acting_as(user)
        found = get_operation(request, operation, operate=True)
        outcome = request_cancel(found, request.user)
        if outcome == "ended":
            raise CommandError("This operation has already ended.")
        self.stdout.write(
            "Cancelled before it started."
            if outcome == "cancelled"
            else "Cancel requested: LXD is asked if the current step allows it."
        )

    def bundle(self, user, operation, container, wait, timeout, **options) -> None:
        request = acting_as(user)
        if operation is not None:
            bundle = request_bundle(
                request.user, operation=get_operation(request, operation, operate=True)
            )
        else:
            host, _, name = container.partition("/")
            instance = get_instance(request, find_container(host, name).pk, operate=True)
            bundle = request_bundle(request.user, instance=instance)
        self.stdout.write(f"bundle #{bundle.pk} {bundle.status}")
        deadline = time.monotonic() + timeout
        while wait and bundle.status == Bundle.Status.COLLECTING:
            if time.monotonic() > deadline:
                raise CommandError(f"bundle #{bundle.pk} still collecting after {timeout:.0f} s.")
            time.sleep(1)
            bundle.refresh_from_db()
        if bundle.status == Bundle.Status.READY:
            self.stdout.write(f"bundle #{bundle.pk} ready: {bundle.file.path}")
        elif bundle.status == Bundle.Status.FAILED:
            raise CommandError(f"bundle #{bundle.pk} failed: {bundle.error}")

    def follow(self, operation: Operation, wait: bool, timeout: float, timeline=False) -> None:
        """Print the operation; with --wait, poll the row (as the API's clients do) until it
        ends, and fail unless it succeeded."""
        self.stdout.write(summary(operation))
        deadline = time.monotonic() + timeout
        while wait and operation.is_active:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"#{operation.pk} still {operation.status} after {timeout:.0f} s."
                )
            time.sleep(1)
            operation.refresh_from_db()
            self.stdout.write(f"  {operation.stage} {operation.progress_text}".rstrip())
        if timeline or wait:
            for event in operation.events.all():
                self.stdout.write(f"  {event.at:%H:%M:%S} [{event.stage or '-'}] {event.message}")
        if wait:
            self.stdout.write(summary(operation))
            if operation.status != Operation.Status.SUCCEEDED:
                raise CommandError(f"#{operation.pk} {operation.status}: {operation.error}")


def add_subject(parser) -> None:
    parser.add_argument("user", help="Act as this user, with their role.")
    parser.add_argument("host")
    parser.add_argument("container")


def add_wait(parser) -> None:
    parser.add_argument("--wait", action="store_true", help="Follow it until it ends.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds (with --wait).")


def acting_as(username: str) -> SimpleNamespace:
    """What the access helpers read from a request: only its user."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"There is no active user named {username!r}.")
    return SimpleNamespace(user=user)


def find_container(host: str, name: str) -> Instance:
    instance = Instance.objects.present().filter(host__name=host, name=name).first()
    if instance is None:
        raise CommandError(f"There is no container {name!r} on {host!r}.")
    return instance


def refuse_unless_valid(form) -> None:
    if not form.is_valid():
        errors = "; ".join(error for errors in form.errors.values() for error in errors)
        raise CommandError(f"Not started: {errors}")


def start(instance: Instance, kind: str, user, **fields) -> Operation:
    try:
        return request_operation(instance, kind, user, **fields)
    except Busy as busy:
        raise CommandError(str(busy)) from None


def summary(operation: Operation) -> str:
    line = f"#{operation.pk}\t{operation.kind}\t{operation.instance_name}\t{operation.status}"
    return f"{line}\t{operation.outcome}".rstrip()
