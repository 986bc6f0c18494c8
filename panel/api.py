"""The JSON API for automation (docs/api.md): the web's actions and rules, with a per-user
token instead of a session.

Every endpoint checks access with the same helpers as the web (panel/access.py), validates
with the same forms (panel/forms.py) and asks for work through the same functions
(request_operation, request_bundle, panel/migration_requests.py): the API adds transport,
never rules.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from functools import wraps

from django import forms
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from panel.access import get_bundle, get_host, get_instance, get_operation
from panel.forms import MigrationForm, OperationForm
from panel.migration_requests import StrategyRefused, migration_fields, request_cancel
from panel.models import ApiToken, Bundle, Host, Instance, Operation
from panel.operations import Busy, request_operation
from panel.views import bundles as bundle_views
from workers.bundles import request_bundle

TOKEN_PREFIX = "lxdp_"  # noqa: S105 (a public marker, not a secret)
MAX_BODY_BYTES = 64 * 1024
PAGE_SIZE = 100
# The facts a client may need to pick a host; the rest (api_extensions, cpu_flags) is long.
HOST_FACTS = (
    "server",
    "server_version",
    "kernel_version",
    "os",
    "architectures",
    "driver",
    "driver_version",
    "storage",
    "system_type",
    "cpu_model",
    "cpu_vendor",
    "cpu_threads",
    "memory_total",
    "storage_pools",
    "profiles",
    "networks",
)


class ApiError(Exception):
    """A refusal with its HTTP status, answered as {"error": message}."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user, name: str) -> tuple[ApiToken, str]:
    """A new token for the user: the row keeps its digest; the token is returned once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[: ApiToken._meta.get_field("prefix").max_length],
        digest=digest_of(token),
    )
    return row, token


def token_user(request: HttpRequest):
    """The active user of the request's valid, unrevoked bearer token, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest_of(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if found is None:
        return None
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return found.user


def token_required(view: Callable) -> Callable:
    """Authenticate by `Authorization: Bearer <token>` only, and answer every refusal as JSON.

    The API never looks at the session cookie: request.user is the token's user or the
    request is refused. So there is nothing for CSRF to ride on (a browser never adds an
    Authorization header on its own to a cross-site request), which is why it is exempt.
    """

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = token_user(request)
        if user is None:
            response = error(401, "Send a valid API token: Authorization: Bearer <token>.")
            response["WWW-Authenticate"] = 'Bearer realm="lxd-panel"'
            return response
        request.user = user
        try:
            return view(request, *args, **kwargs)
        except ApiError as refusal:
            return error(refusal.status, str(refusal), **refusal.extra)
        except PermissionDenied as denied:
            return error(403, str(denied) or "You are not allowed to do this.")
        except Http404:
            return error(404, "Not found.")

    return wrapper


def allow(*methods: str) -> Callable:
    """Like require_http_methods, answering 405 in JSON; a POST body over the limit is 413."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"Use {' or '.join(methods)} here.")
                response["Allow"] = ", ".join(methods)
                return response
            if body_length(request) > MAX_BODY_BYTES:
                return error(413, f"The request body is over {MAX_BODY_BYTES // 1024} KiB.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def body_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return MAX_BODY_BYTES + 1


def json_object(request: HttpRequest) -> dict:
    """The request's JSON object, its values plain scalars; an empty body is {}."""
    if not request.body:
        return {}
    if request.content_type != "application/json":
        raise ApiError(415, "Send a JSON object with Content-Type: application/json.")
    try:
        data = json.loads(request.body)
    except ValueError as problem:  # also invalid UTF-8
        raise ApiError(400, f"The body is not valid JSON (UTF-8): {problem}") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'The body must be a JSON object, like {"kind": "stop"}.')
    nested = sorted(key for key, value in data.items() if isinstance(value, dict | list))
    if nested:
        raise ApiError(
            400, "Invalid request.", errors={key: ["Give a single value."] for key in nested}
        )
    return data


def form_errors(form: forms.Form) -> JsonResponse:
    errors = {
        field: [str(message) for message in messages] for field, messages in form.errors.items()
    }
    summary = "; ".join(message for messages in errors.values() for message in messages)
    return error(400, f"Not started: {summary}", errors=errors)


def url(request: HttpRequest, name: str, pk: int) -> str:
    return request.build_absolute_uri(reverse(name, kwargs={"pk": pk}))


def stamp(moment) -> str | None:
    return moment.isoformat() if moment else None


def paginated(request: HttpRequest, items, serialise: Callable) -> JsonResponse:
    paginator = Paginator(items, PAGE_SIZE)
    try:
        page = paginator.page(request.GET.get("page") or 1)
    except PageNotAnInteger:
        raise ApiError(400, "page must be a whole number.") from None
    except EmptyPage:
        raise ApiError(404, f"There are {paginator.num_pages} page(s).") from None

    def link(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

    return JsonResponse(
        {
            "count": paginator.count,
            "next": link(page.next_page_number()) if page.has_next() else None,
            "previous": link(page.previous_page_number()) if page.has_previous() else None,
            "results": [serialise(request, item) for item in page.object_list],
        }
    )


def filters(request: HttpRequest, form_class: type[forms.Form]) -> dict:
    form = form_class(request.GET)
    if not form.is_valid():
        errors = {field: [str(m) for m in messages] for field, messages in form.errors.items()}
        raise ApiError(400, "Invalid filter.", errors=errors)
    return form.cleaned_data


# Serialisers: plain functions, one per object.


def host_json(request: HttpRequest, host: Host) -> dict:
    """What the host page shows; of the certificates only the pinned fingerprint."""
    return {
        "id": host.pk,
        "url": url(request, "api-host-detail", host.pk),
        "name": host.name,
        "endpoint": host.endpoint,
        "status": host.status,
        "enrollment": host.enrollment,
        "fingerprint": host.fingerprint,
        "server_version": host.server_version,
        "last_contact": stamp(host.last_contact),
        "last_sync": stamp(host.last_sync),
        "last_error": host.last_error,
        "agent_seen_at": stamp(host.agent_seen_at),
        "facts": {key: host.facts[key] for key in HOST_FACTS if key in host.facts},
        "capabilities": [
            {
                "key": c.key,
                "label": c.label,
                "state": c.state,
                "allowed": c.allowed,
                "reason": c.reason,
            }
            for c in host.capabilities
        ],
    }


def container_json(request: HttpRequest, instance: Instance) -> dict:
    return {
        "id": instance.pk,
        "url": url(request, "api-container-detail", instance.pk),
        "name": instance.name,
        "host": {"id": instance.host_id, "name": instance.host.name},
        "type": instance.type,
        "status": instance.status,
        "architecture": instance.architecture,
        "description": instance.description,
        "ephemeral": instance.ephemeral,
        "stateful": instance.stateful,
        "created_at": stamp(instance.created_at),
        "last_used_at": stamp(instance.last_used_at),
        "synced_at": stamp(instance.synced_at),
        "gone_at": stamp(instance.gone_at),
    }


def container_detail_json(request: HttpRequest, instance: Instance) -> dict:
    """`lxc info` and `lxc config show --expanded`, as the container page shows them."""
    active = instance.operations.active().first()
    return {
        **container_json(request, instance),
        "profiles": instance.profiles,
        "config": instance.expanded_config,
        "devices": instance.expanded_devices,
        "state": instance.state,
        "snapshots": [
            {
                "name": s.name,
                "taken_at": stamp(s.created_at),
                "expires_at": stamp(s.expires_at),
                "stateful": s.stateful,
            }
            for s in instance.snapshots.all()
        ],
        "active_operation": operation_json(request, active) if active else None,
    }


def operation_json(request: HttpRequest, operation: Operation) -> dict:
    """Everything the progress page shows; poll it until `active` is false."""
    duration = operation.duration
    return {
        "id": operation.pk,
        "url": url(request, "api-operation-detail", operation.pk),
        "kind": operation.kind,
        "status": operation.status,
        "active": operation.is_active,
        "container": {"id": operation.instance_id, "name": operation.instance_name},
        "target_name": operation.target_name,
        "source_host": getattr(operation.source_host, "name", None),
        "target_host": getattr(operation.target_host, "name", None),
        "requested_by": getattr(operation.requested_by, "username", None),
        "params": operation.params,
        "stage": operation.stage,
        "progress_text": operation.progress_text,
        "progress_fraction": operation.progress_fraction,
        "may_cancel": operation.may_cancel,
        "cancel_requested": operation.cancel_requested,
        "queued_at": stamp(operation.queued_at),
        "started_at": stamp(operation.started_at),
        "finished_at": stamp(operation.finished_at),
        "duration_seconds": round(duration.total_seconds(), 3) if duration else None,
        "outcome": operation.outcome,
        "error": operation.error,
        "container_state_after": operation.container_state_after,
        "downtime_seconds": operation.downtime_seconds,
    }


def operation_detail_json(request: HttpRequest, operation: Operation) -> dict:
    return {
        **operation_json(request, operation),
        "result": operation.result,
        "events": [
            {"at": stamp(e.at), "stage": e.stage, "message": e.message}
            for e in operation.events.all()
        ],
        "bundles": [
            url(request, "api-bundle-detail", pk)
            for pk in operation.bundles.values_list("pk", flat=True)
        ],
    }


def bundle_json(request: HttpRequest, bundle: Bundle) -> dict:
    ready = bundle.status == Bundle.Status.READY and bool(bundle.file)
    return {
        "id": bundle.pk,
        "url": url(request, "api-bundle-detail", bundle.pk),
        "status": bundle.status,
        "automatic": bundle.automatic,
        "operation": bundle.operation_id,
        "container": {"id": bundle.instance_id, "name": bundle.instance_name},
        "requested_by": getattr(bundle.requested_by, "username", None),
        "created_at": stamp(bundle.created_at),
        "finished_at": stamp(bundle.finished_at),
        "size": bundle.size,
        "sha256": bundle.sha256,
        "error": bundle.error,
        "download_url": url(request, "api-bundle-download", bundle.pk) if ready else None,
    }


def created(request: HttpRequest, body: dict, status: int = 201) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Location"] = body["url"]
    return response


def queued(request: HttpRequest, instance: Instance, kind: str, **fields) -> JsonResponse:
    """request_operation, answered 201 with the operation, or 409 naming the active one."""
    try:
        operation = request_operation(instance, kind, request.user, **fields)
    except Busy as busy:
        active = operation_json(request, busy.active) if busy.active else None
        return error(409, str(busy), active_operation=active)
    return created(request, operation_detail_json(request, operation))


# Hosts


@token_required
@allow("GET")
def host_list(request: HttpRequest) -> JsonResponse:
    return paginated(request, Host.objects.all(), host_json)


@token_required
@allow("GET")
def host_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(host_json(request, get_host(request, pk)))


# Containers


class ContainerFilters(forms.Form):
    host = forms.CharField(max_length=63, required=False)
    state = forms.CharField(max_length=16, required=False)
    q = forms.CharField(max_length=63, required=False)


@token_required
@allow("GET")
def container_list(request: HttpRequest) -> JsonResponse:
    """Present containers, as the web's list: ?host=NAME&state=Running&q=part-of-name."""
    wanted = filters(request, ContainerFilters)
    instances = Instance.objects.present().select_related("host").order_by("name", "host__name")
    if wanted["host"]:
        instances = instances.filter(host__name=wanted["host"])
    if wanted["state"]:
        instances = instances.filter(status=wanted["state"])
    if wanted["q"]:
        instances = instances.filter(name__icontains=wanted["q"])
    return paginated(request, instances, container_json)


@token_required
@allow("GET")
def container_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(container_detail_json(request, get_instance(request, pk)))


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


@token_required
@allow("POST")
def container_migrate_check(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_instance(request, pk, operate=True)
    form = migration_form(request, instance)
    if not form.is_valid():
        return form_errors(form)
    fields = migration_fields(instance, form, resolve=False)
    return queued(request, instance, Operation.Kind.PREFLIGHT, **fields)


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


@token_required
@allow("POST")
def container_bundle(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_instance(request, pk, operate=True)
    bundle = request_bundle(request.user, instance=instance)
    return created(request, bundle_json(request, bundle), status=202)


# Operations


class OperationFilters(forms.Form):
    host = forms.CharField(max_length=63, required=False)
    container = forms.CharField(max_length=63, required=False)
    kind = forms.ChoiceField(choices=[("", ""), *Operation.Kind.choices], required=False)
    status = forms.ChoiceField(choices=[("", ""), *Operation.Status.choices], required=False)
    user = forms.CharField(max_length=150, required=False)


@token_required
@allow("GET")
def operation_list(request: HttpRequest) -> JsonResponse:
    """Newest first, as the web's history: ?host=&container=&kind=&status=&user=."""
    wanted = filters(request, OperationFilters)
    operations = Operation.objects.select_related("source_host", "target_host", "requested_by")
    if wanted["host"]:
        operations = operations.filter(
            Q(source_host__name=wanted["host"]) | Q(target_host__name=wanted["host"])
        )
    if wanted["container"]:
        operations = operations.filter(instance_name=wanted["container"])
    if wanted["kind"]:
        operations = operations.filter(kind=wanted["kind"])
    if wanted["status"]:
        operations = operations.filter(status=wanted["status"])
    if wanted["user"]:
        operations = operations.filter(requested_by__username=wanted["user"])
    return paginated(request, operations.order_by("-queued_at", "-pk"), operation_json)


@token_required
@allow("GET")
def operation_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(operation_detail_json(request, get_operation(request, pk)))


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


@token_required
@allow("POST")
def operation_bundle(request: HttpRequest, pk: int) -> JsonResponse:
    operation = get_operation(request, pk, operate=True)
    bundle = request_bundle(request.user, operation=operation)
    return created(request, bundle_json(request, bundle), status=202)


# Bundles


@token_required
@allow("GET")
def bundle_list(request: HttpRequest) -> JsonResponse:
    bundles = Bundle.objects.select_related("requested_by")
    return paginated(request, bundles, bundle_json)


@token_required
@allow("GET")
def bundle_detail(request: HttpRequest, pk: int) -> JsonResponse:
    bundle = get_bundle(request, pk)
    return JsonResponse(
        {**bundle_json(request, bundle), "manifest": bundle.manifest, "report": bundle.report}
    )


@token_required
@allow("GET")
def bundle_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The web's download view itself, so who may download and which file is served (by
    primary key, the name from the row) are one piece of code."""
    return bundle_views.bundle_download(request, pk)


@token_required
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error(404, "No such API endpoint: see docs/api.md.")
