"""The JSON API for automation (docs/api.md): the web's actions and rules, with a per-user
token instead of a session.

Every endpoint checks access with the same helpers as the web (panel/web/access.py), filters
with the same filter sets (panel/web/filters.py), validates with the same forms
(panel/web/forms.py) and asks for work through the same request functions as the web
(panel/operations/requests.py, panel/bundles/requests.py): the API adds transport, never rules.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, JsonResponse

from panel.bundles.requests import request_bundle
from panel.failures import requests as failures
from panel.models import Bundle, FailureGroup, Host, Instance, Operation
from panel.operations.requests import (
    Busy,
    StrategyRefused,
    migration_fields,
    request_cancel,
    request_operation,
)
from panel.web.access import get_bundle, get_failure_group, get_instance, get_operation
from panel.web.api.base import (
    allow,
    created,
    error,
    filtered,
    form_errors,
    json_object,
    paginated,
    token_required,
)
from panel.web.api.schema import describe
from panel.web.api.serialise import (
    bundle_json,
    container_detail_json,
    container_json,
    failure_group_detail_json,
    failure_group_json,
    operation_detail_json,
    operation_json,
)
from panel.web.api.shapes import (
    BundleDetailShape,
    BundleShape,
    CancelShape,
    ContainerDetailShape,
    ContainerShape,
    FailureGroupDetailShape,
    FailureGroupShape,
    OperationDetailShape,
    OperationShape,
)
from panel.web.filters import ContainerFilter, FailureFilter, OperationFilter
from panel.web.forms import (
    FailureNoteForm,
    FailureStatusForm,
    MigrationForm,
    OperationForm,
    UpstreamForm,
)
from panel.web.views import bundles as bundle_views


def queued(request: HttpRequest, instance: Instance, kind: str, **fields) -> JsonResponse:
    """request_operation, answered 201 with the operation, or 409 naming the active one."""
    try:
        operation = request_operation(instance, kind, request.user, **fields)
    except Busy as busy:
        active = operation_json(request, busy.active) if busy.active else None
        return error(409, str(busy), active_operation=active)
    return created(request, operation_detail_json(request, operation))


# Containers


@describe("GET", "Present containers, as the web's list.", response=ContainerShape, page=True,
          query=ContainerFilter, refusals=(400, 404))  # fmt: skip
@token_required
@allow("GET")
def container_list(request: HttpRequest) -> JsonResponse:
    """Present containers, as the web's list: ?host=NAME&state=Running&q=part-of-name."""
    instances = Instance.objects.present().select_related("host").order_by("name", "host__name")
    return paginated(request, filtered(request, ContainerFilter, instances), container_json)


@describe("GET", "One container: `lxc info`, its expanded config, snapshots, active operation.",
          response=ContainerDetailShape, refusals=(404,))  # fmt: skip
@token_required
@allow("GET")
def container_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(container_detail_json(request, get_instance(request, pk)))


@describe(
    "POST", "Start any operation the container page offers (operators).",
    response=OperationDetailShape, status=201, body=OperationForm,
    refusals=(400, 403, 404, 409, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def container_operation(request: HttpRequest, pk: int) -> JsonResponse:
    """Start any operation the container page offers, validated by the same form."""
    instance = get_instance(request, pk, operate=True)
    form = OperationForm(json_object(request), instance=instance)
    if not form.is_valid():
        return form_errors(form)
    return queued(request, instance, form.cleaned_data["kind"], params=form.params())


def migration_form(request: HttpRequest, instance: Instance) -> MigrationForm:
    """The web's form; `target` may also be given by host name, and `strategy` defaults to
    the form's initial choice ("auto") as the web's select does."""
    data = json_object(request)
    data.setdefault("strategy", MigrationForm.base_fields["strategy"].initial)
    target = data.get("target")
    if isinstance(target, str) and not target.isdigit():
        data["target"] = Host.objects.filter(name=target).values_list("pk", flat=True).first()
    return MigrationForm(data, instance=instance)


@describe(
    "POST", "Run the migration pre-flight checks (operators).",
    response=OperationDetailShape, status=201, body=MigrationForm,
    refusals=(400, 403, 404, 409, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def container_migrate_check(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_instance(request, pk, operate=True)
    form = migration_form(request, instance)
    if not form.is_valid():
        return form_errors(form)
    fields = migration_fields(instance, form, resolve=False)
    return queued(request, instance, Operation.Kind.PREFLIGHT, **fields)


@describe(
    "POST", "Migrate the container to another host (operators).",
    response=OperationDetailShape, status=201, body=MigrationForm,
    refusals=(400, 403, 404, 409, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def container_migrate(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_instance(request, pk, operate=True)
    form = migration_form(request, instance)
    if not form.is_valid():
        return form_errors(form)
    try:
        fields = migration_fields(instance, form, resolve=True)
    except StrategyRefused as refused:
        return error(400, f"Not started: {refused}", errors={"strategy": [str(refused)]})
    return queued(request, instance, Operation.Kind.MIGRATE, **fields)


@describe("POST", "Collect a bug bundle of the container (operators).", response=BundleShape,
          status=202, refusals=(403, 404))  # fmt: skip
@token_required
@allow("POST")
def container_bundle(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_instance(request, pk, operate=True)
    bundle = request_bundle(request.user, instance=instance)
    return created(request, bundle_json(request, bundle), status=202)


# Operations


@describe("GET", "Operations, newest first.", response=OperationShape, page=True,
          query=OperationFilter, refusals=(400, 404))  # fmt: skip
@token_required
@allow("GET")
def operation_list(request: HttpRequest) -> JsonResponse:
    """Newest first, as the web's history: ?host=&container=&kind=&status=&user=."""
    operations = Operation.objects.select_related("source_host", "target_host", "requested_by")
    operations = filtered(request, OperationFilter, operations.order_by("-queued_at", "-pk"))
    return paginated(request, operations, operation_json)


@describe("GET", "One operation: its phases, progress, timeline, outcome and bundles.",
          response=OperationDetailShape, refusals=(404,))  # fmt: skip
@token_required
@allow("GET")
def operation_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(operation_detail_json(request, get_operation(request, pk)))


@describe("POST", "Cancel: a queued operation ends at once (200), a running one is asked (202).",
          response=CancelShape, status=202, also=(200,), refusals=(403, 404, 409))  # fmt: skip
@token_required
@allow("POST")
def operation_cancel(request: HttpRequest, pk: int) -> JsonResponse:
    """As the web's Cancel: a queued operation ends at once, a running one is asked to stop."""
    operation = get_operation(request, pk, operate=True)
    outcome = request_cancel(operation, request.user)
    if outcome == "ended":
        return error(409, "This operation has already ended.")
    operation.refresh_from_db()
    return JsonResponse(
        {"cancel": outcome, "operation": operation_json(request, operation)},
        status=200 if outcome == "cancelled" else 202,
    )


@describe("POST", "Collect a bug bundle of the operation (operators).", response=BundleShape,
          status=202, refusals=(403, 404))  # fmt: skip
@token_required
@allow("POST")
def operation_bundle(request: HttpRequest, pk: int) -> JsonResponse:
    operation = get_operation(request, pk, operate=True)
    bundle = request_bundle(request.user, operation=operation)
    return created(request, bundle_json(request, bundle), status=202)


# Bundles


@describe("GET", "Bug-report bundles, newest first.", response=BundleShape, page=True,
          refusals=(400, 404))  # fmt: skip
@token_required
@allow("GET")
def bundle_list(request: HttpRequest) -> JsonResponse:
    bundles = Bundle.objects.select_related("requested_by")
    return paginated(request, bundles, bundle_json)


@describe("GET", "One bundle with its manifest and report.", response=BundleDetailShape,
          refusals=(404,))  # fmt: skip
@token_required
@allow("GET")
def bundle_detail(request: HttpRequest, pk: int) -> JsonResponse:
    bundle = get_bundle(request, pk)
    return JsonResponse(
        {**bundle_json(request, bundle), "manifest": bundle.manifest, "report": bundle.report}
    )


@describe("GET", "The bundle's tarball (operators).", file="application/gzip",
          refusals=(403, 404))  # fmt: skip
@token_required
@allow("GET")
def bundle_download(request: HttpRequest, pk: int) -> FileResponse:
    """The web's download view itself, so who may download and which file is served (by
    primary key, the name from the row) are one piece of code."""
    return bundle_views.bundle_download(request, pk)


# Failure groups


@describe(
    "GET", "Failure groups, newest failure first (ignored ones only when asked).",
    response=FailureGroupShape, page=True, query=FailureFilter, refusals=(400, 404),
)  # fmt: skip
@token_required
@allow("GET")
def failure_list(request: HttpRequest) -> JsonResponse:
    """As the web's list, newest failure first: ?status=&host=&kind= (no status: every
    group but the ignored ones; status=all: those too)."""
    return paginated(request, filtered(request, FailureFilter, FailureGroup.objects.all()),
                     failure_group_json)  # fmt: skip


@describe("GET", "One failure group: its operations, latest bundle, and (for operators) the "
          "pre-filled links to file it upstream.", response=FailureGroupDetailShape,
          refusals=(404,))  # fmt: skip
@token_required
@allow("GET")
def failure_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(failure_group_detail_json(request, get_failure_group(request, pk)))


def failure_change(request: HttpRequest, pk: int, form_class, change) -> JsonResponse:
    """Validate the one value with the web's form, apply it as the web does, answer the group."""
    group = get_failure_group(request, pk, change=True)
    form = form_class(json_object(request))
    if not form.is_valid():
        return form_errors(form, refused="Not saved")
    change(group, next(iter(form.cleaned_data.values())), request.user, request)
    return JsonResponse(failure_group_detail_json(request, group))


@describe(
    "POST", "Set a group's status (operators).",
    response=FailureGroupDetailShape, body=FailureStatusForm, refusals=(400, 403, 404, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def failure_status(request: HttpRequest, pk: int) -> JsonResponse:
    """{"status": "new" | "filed" | "fixed" | "ignored"}"""
    return failure_change(request, pk, FailureStatusForm, failures.set_status)


@describe(
    "POST", "Record the upstream bug's URL; a new group becomes filed (operators).",
    response=FailureGroupDetailShape, body=UpstreamForm, refusals=(400, 403, 404, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def failure_upstream(request: HttpRequest, pk: int) -> JsonResponse:
    """{"url": "https://..."} records the upstream bug (a new group becomes filed); "" clears it."""
    return failure_change(request, pk, UpstreamForm, failures.set_upstream)


@describe(
    "POST", "The team's note, shown on every failure of the group (operators).",
    response=FailureGroupDetailShape, body=FailureNoteForm, refusals=(400, 403, 404, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def failure_note(request: HttpRequest, pk: int) -> JsonResponse:
    """{"note": "..."}: the team's note, shown on every failure of the group."""
    return failure_change(request, pk, FailureNoteForm, failures.set_note)


@token_required
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error(404, "No such API endpoint: GET /api/ lists them (docs/api.md).")
