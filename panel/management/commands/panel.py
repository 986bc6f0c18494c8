"""The API's abilities from a shell (docs/api.md): list, start an operation or a migration as
a given user, follow it, cancel it, collect a bundle; add (enrol) and remove hosts. With
--json every action prints what the API would answer, one JSON document.

Every action acting for a user goes through the same access helpers, forms and request
functions as the web and the API, so a viewer is refused here too.
"""

from __future__ import annotations

import getpass
import json
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404, HttpRequest

from panel.accounts.roles import can_manage_hosts
from panel.bundles.requests import request_bundle
from panel.hosts import enrolment
from panel.models import Bundle, Host, Instance, Operation
from panel.operations.requests import (
    Busy,
    StrategyRefused,
    migration_fields,
    request_cancel,
    request_operation,
)
from panel.web.access import get_host, get_instance, get_operation
from panel.web.api.serialise import (
    bundle_json,
    container_json,
    host_json,
    operation_detail_json,
    operation_json,
)
from panel.web.filters import ContainerFilter, OperationFilter, filter_errors
from panel.web.forms import (
    EXPIRY_CHOICES,
    STRATEGY_CHOICES,
    AddHostForm,
    ConfirmHostForm,
    MigrationForm,
    OperationForm,
)


class Command(BaseCommand):
    help = "List hosts, containers and operations; run, follow and cancel operations; bundles."
    as_json = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the API's JSON.")
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("hosts", help="Every host with its status and capabilities.")
        host_add = actions.add_parser("host-add", help="Add a host as USER (an administrator).")
        host_add.add_argument("user")
        host_add.add_argument("name")
        host_add.add_argument("endpoint", help="https://address:8443 or a unix socket path.")
        add_wait(host_add)
        host_confirm = actions.add_parser(
            "host-confirm",
            help="Trust an enrolling host whose FINGERPRINT you compared with `lxc info` on it; "
            "the trust password or token is read from standard input (never from argv).",
        )
        host_confirm.add_argument("user")
        host_confirm.add_argument("name")
        host_confirm.add_argument("fingerprint")
        add_wait(host_confirm)
        host_remove = actions.add_parser("host-remove", help="Remove a host from the panel.")
        host_remove.add_argument("user")
        host_remove.add_argument("name")
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
        self.as_json = options.pop("json")
        try:
            getattr(self, action.replace("-", "_"))(**options)
        except PermissionDenied as denied:
            raise CommandError(f"Refused: {denied}") from None
        except Http404:
            raise CommandError("Not found.") from None

    def emit(self, document) -> None:
        self.stdout.write(json.dumps(document, indent=2, sort_keys=True))

    def hosts(self, **options) -> None:
        if self.as_json:
            return self.emit([host_json(shell_request(), h) for h in Host.objects.all()])
        for host in Host.objects.all():
            can = ", ".join(f"{c.key}={c.state}" for c in host.capabilities)
            self.stdout.write(
                f"{host.pk}\t{host.name}\t{host.status}\t{host.server_version}\t{can}"
            )

    def host_add(
        self, user: str, name: str, endpoint: str, wait: bool, timeout: float, **_
    ) -> None:
        request = acting_as(user)
        if not can_manage_hosts(request.user):
            raise PermissionDenied("Only administrators can manage hosts.")
        form = AddHostForm({"name": name, "endpoint": endpoint})
        refuse_unless_valid(form, "Not added")
        host = enrolment.add_host(form.cleaned_data["name"], form.cleaned_data["endpoint"])
        waiting = (Host.Enrollment.FETCHING_CERTIFICATE,)
        self.follow_host(request, host, wait, timeout, waiting)
        if not self.as_json and host.enrollment == Host.Enrollment.AWAITING_CONFIRMATION:
            self.stdout.write(
                f"Compare with `lxc info | grep certificate_fingerprint` on the host, then:\n"
                f"  manage.py panel host-confirm {user} {host.name} {host.offered_fingerprint}"
            )

    def host_confirm(self, user: str, name: str, fingerprint: str, wait: bool, timeout: float,
                     **_) -> None:  # fmt: skip
        request = acting_as(user)
        host = get_host(request, find_host(name).pk, manage=True)
        if host.enrollment != Host.Enrollment.AWAITING_CONFIRMATION:
            raise CommandError(f"{host.name} is not waiting for a confirmation.")
        secret = read_secret()
        form = ConfirmHostForm({"fingerprint": fingerprint, "secret": secret}, host=host)
        refuse_unless_valid(form, "Not trusted")
        enrolment.confirm_fingerprint(host, form.cleaned_data["secret"])
        self.follow_host(request, host, wait, timeout, (Host.Enrollment.TRUSTING,))

    def host_remove(self, user: str, name: str, **_) -> None:
        host = get_host(acting_as(user), find_host(name).pk, manage=True)
        host.delete()
        if self.as_json:
            return self.emit({"removed": name})
        self.stdout.write(f"Removed {name} from the panel (nothing changed on the host).")

    def follow_host(self, request, host: Host, wait: bool, timeout: float, waiting) -> None:
        """With --wait, until the worker has moved the host past `waiting`."""
        deadline = time.monotonic() + timeout
        while wait and host.status == Host.Status.ENROLLING and host.enrollment in waiting:
            if time.monotonic() > deadline:
                raise CommandError(f"{host.name} still {host.enrollment} after {timeout:.0f} s.")
            time.sleep(0.5)
            host.refresh_from_db()
        if host.enrollment == Host.Enrollment.FAILED:
            raise CommandError(f"{host.name}: {host.last_error}")
        if self.as_json:
            return self.emit(host_json(shell_request(request.user), host))
        fingerprint = host.offered_fingerprint if host.offered_certificate else ""
        self.stdout.write(f"{host.pk}\t{host.name}\t{host.status}\t{host.enrollment}"
                          f"\t{fingerprint}".rstrip())  # fmt: skip

    def containers(self, host: str, state: str, q: str, **options) -> None:
        instances = Instance.objects.present().select_related("host").order_by("name")
        found = shell_filtered(ContainerFilter, {"host": host, "state": state, "q": q}, instances)
        if self.as_json:
            return self.emit([container_json(shell_request(), i) for i in found])
        for instance in found:
            self.stdout.write(
                f"{instance.pk}\t{instance.host.name}\t{instance.name}\t{instance.status}"
            )

    def operations(self, limit: int, **wanted) -> None:
        operations = Operation.objects.select_related("source_host", "requested_by")
        found = shell_filtered(OperationFilter, wanted, operations)[:limit]
        if self.as_json:
            return self.emit([operation_json(shell_request(), o) for o in found])
        for operation in found:
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
        if self.as_json:
            found.refresh_from_db()
            return self.emit({"cancel": outcome, "operation": operation_json(request, found)})
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
        self.say(f"bundle #{bundle.pk} {bundle.status}")
        deadline = time.monotonic() + timeout
        while wait and bundle.status == Bundle.Status.COLLECTING:
            if time.monotonic() > deadline:
                raise CommandError(f"bundle #{bundle.pk} still collecting after {timeout:.0f} s.")
            time.sleep(1)
            bundle.refresh_from_db()
        if self.as_json:
            self.emit(bundle_json(request, bundle))
        elif bundle.status == Bundle.Status.READY:
            self.stdout.write(
                f"bundle #{bundle.pk} ready: {bundle.file.name} ({bundle.size} bytes, "
                f"sha256 {bundle.sha256}); download it from the bundle's page"
            )
        if bundle.status == Bundle.Status.FAILED:
            raise CommandError(f"bundle #{bundle.pk} failed: {bundle.error}")

    def say(self, line: str) -> None:
        """A progress line: on standard error with --json, so standard output stays JSON."""
        (self.stderr if self.as_json else self.stdout).write(line)

    def follow(self, operation: Operation, wait: bool, timeout: float, timeline=False) -> None:
        """Print the operation; with --wait, poll the row (as the API's clients do) until it
        ends, and fail unless it succeeded."""
        self.say(summary(operation))
        deadline = time.monotonic() + timeout
        while wait and operation.is_active:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"#{operation.pk} still {operation.status} after {timeout:.0f} s."
                )
            time.sleep(1)
            operation.refresh_from_db()
            self.say(f"  {operation.stage} {operation.progress_text}".rstrip())
        if self.as_json:
            self.emit(operation_detail_json(shell_request(), operation))
        elif timeline or wait:
            for event in operation.events.all():
                self.stdout.write(f"  {event.at:%H:%M:%S} [{event.stage or '-'}] {event.message}")
        if wait:
            self.say(summary(operation))
            if operation.status != Operation.Status.SUCCEEDED:
                raise CommandError(f"#{operation.pk} {operation.status}: {operation.error}")


def add_subject(parser) -> None:
    parser.add_argument("user", help="Act as this user, with their role.")
    parser.add_argument("host")
    parser.add_argument("container")


def add_wait(parser) -> None:
    parser.add_argument("--wait", action="store_true", help="Follow it until it ends.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds (with --wait).")


def shell_request(user=None) -> HttpRequest:
    """A request for the serialisers' links and the access helpers' user: the panel's first
    allowed host name stands for the address a browser would use."""
    request = HttpRequest()
    host = next((name for name in settings.ALLOWED_HOSTS if "*" not in name), "localhost")
    request.META = {"SERVER_NAME": host.lstrip("."), "SERVER_PORT": "80"}
    request.user = user
    return request


def acting_as(username: str) -> HttpRequest:
    """What the access helpers read from a request: only its user."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"There is no active user named {username!r}.")
    return shell_request(user)


def find_host(name: str) -> Host:
    host = Host.objects.filter(name=name).first()
    if host is None:
        raise CommandError(f"There is no host named {name!r}.")
    return host


def read_secret() -> str:
    """The trust password or token: asked for on a terminal, else one line of stdin."""
    secret = getpass.getpass("Trust password or token: ") if sys.stdin.isatty() else ""
    return (secret or sys.stdin.readline()).strip()


def find_container(host: str, name: str) -> Instance:
    instance = Instance.objects.present().filter(host__name=host, name=name).first()
    if instance is None:
        raise CommandError(f"There is no container {name!r} on {host!r}.")
    return instance


def refuse_unless_valid(form, refused: str = "Not started") -> None:
    if not form.is_valid():
        errors = "; ".join(error for errors in form.errors.values() for error in errors)
        raise CommandError(f"{refused}: {errors}")


def start(instance: Instance, kind: str, user, **fields) -> Operation:
    try:
        return request_operation(instance, kind, user, **fields)
    except Busy as busy:
        raise CommandError(str(busy)) from None


def summary(operation: Operation) -> str:
    line = f"#{operation.pk}\t{operation.kind}\t{operation.instance_name}\t{operation.status}"
    return f"{line}\t{operation.outcome}".rstrip()


def shell_filtered(filterset_class, wanted: dict, queryset):
    """The list's rows through its shared filter (panel/web/filters.py); refused if invalid."""
    given = {key: value for key, value in wanted.items() if key in filterset_class.base_filters}
    filterset = filterset_class(given, queryset=queryset)
    if not filterset.is_valid():
        errors = "; ".join(f"--{k}: {' '.join(v)}" for k, v in filter_errors(filterset).items())
        raise CommandError(f"Invalid filter: {errors}")
    return filterset.qs
