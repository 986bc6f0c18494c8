"""The audit trail: every action and every refused attempt, who, what, on which object,
when, from which address, and the outcome.

One middleware records every state-changing request (POST and friends, web and API alike)
and every 403, so no view can forget; login, logout, failed logins and lock-outs come from
auth signals. Secrets in forms (passwords, tokens) are never written here, and what is
written passes the redaction policy (panel/redaction.py).
"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve

from panel.accounts.addresses import client_address
from panel.models import (
    AuditEvent,
    Bundle,
    FailureGroup,
    Host,
    Instance,
    MaintenancePlan,
    Operation,
)
from panel.redaction import policy
from panel.text import storable

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
SECRET_FIELDS = ("password", "secret", "token", "csrfmiddlewaretoken")
# The object a URL acts on, from the start of its name (see panel/urls.py).
AuditedObject = Host | Instance | Operation | Bundle | FailureGroup | MaintenancePlan
OBJECT_TYPES: list[tuple[str, type[AuditedObject]]] = [
    ("host", Host),
    ("add-local-host", Host),
    ("instance", Instance),
    ("schedule", Instance),
    ("migration", Instance),
    ("operation", Operation),
    ("remove-left-copy", Operation),
    ("bundle", Bundle),
    ("failure", FailureGroup),
    ("maintenance", MaintenancePlan),
    ("api-host", Host),
    ("api-container", Instance),
    ("api-operation", Operation),
    ("api-bundle", Bundle),
    ("api-failure", FailureGroup),
    ("api-maintenance", MaintenancePlan),
]
SIGNALLED = {"login", "logout"}  # recorded by the auth signals below, with better words


class AuditMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method not in SAFE_METHODS or response.status_code == 403:
            match = getattr(request, "resolver_match", None)
            if match is None or match.url_name not in SIGNALLED:
                record_request(request, response)
        return response


def record_request(request: HttpRequest, response: HttpResponse) -> None:
    match = getattr(request, "resolver_match", None) or _resolve(request.path_info)
    action = (match.url_name if match and match.url_name else request.path)[:64]
    object_type, object_id, object_repr = describe_object(action, match.kwargs if match else {})
    refusals = error_messages(request)
    if response.status_code == 403:
        outcome = AuditEvent.Outcome.FORBIDDEN
    elif response.status_code >= 400 or refusals:
        outcome = AuditEvent.Outcome.REFUSED
    else:
        outcome = AuditEvent.Outcome.OK
    details = [f"{request.method} {request.path}", form_summary(request), *refusals]
    if response.get("Location"):
        details.append(f"-> {response['Location']}")
    audit(
        request,
        action,
        outcome,
        object_type,
        object_id,
        object_repr,
        " | ".join(d for d in details if d),
    )


def _resolve(path: str) -> ResolverMatch | None:
    """The URL's name when a middleware answered before Django resolved it (a refused input)."""
    try:
        return resolve(path)
    except Resolver404:
        return None


def audit(
    request: HttpRequest | None,
    action: str,
    outcome: str,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    detail: str = "",
    username: str = "",
) -> AuditEvent:
    user = getattr(request, "user", None) if request is not None else None
    known = user if user is not None and user.is_authenticated else None
    # Forms carry URLs and names an administrator typed: the trail and its CSV export leave
    # the panel, so they hold only what the redaction policy lets out. Every string may come
    # from the request (a NUL byte, a lone surrogate): stored escaped, so the row is written
    # on PostgreSQL too, after the action it records has committed.
    redactor = policy()
    detail, object_repr = redactor.text(detail), redactor.text(object_repr)
    return AuditEvent.objects.create(
        user=known,
        username=storable(known.get_username() if known else username)[:150],
        action=storable(action)[:64],
        object_type=storable(object_type)[:32],
        object_id=storable(str(object_id))[:64],
        object_repr=storable(object_repr)[:200],
        address=request_address(request),
        outcome=outcome,
        detail=storable(detail)[:4000],
    )


def describe_object(action: str, kwargs: dict) -> tuple[str, str, str]:
    pk = kwargs.get("pk")
    if pk is None:
        return "", "", ""
    for prefix, model in OBJECT_TYPES:
        if action.startswith(prefix):
            found = model.objects.filter(pk=pk).first()
            return model.__name__.lower(), str(pk), str(found) if found else "(not found)"
    return "", str(pk), ""


def form_summary(request: HttpRequest) -> str:
    """The submitted fields, minus anything secret, each value shortened."""
    fields = []
    for key in sorted(request.POST.keys()):
        if any(word in key.lower() for word in SECRET_FIELDS):
            continue
        fields.append(f"{key}={request.POST.get(key, '')[:80]}")
    return " ".join(fields)[:1000]


def error_messages(request: HttpRequest) -> list[str]:
    """Refusals the view told the user with messages.error (e.g. "busy: ...")."""
    storage = getattr(request, "_messages", None)
    queued = getattr(storage, "_queued_messages", [])  # messages added in this request
    return [str(message.message)[:500] for message in queued if message.level_tag == "error"]


def request_address(request: HttpRequest | None) -> str | None:
    return client_address(request) if request is not None else None


@receiver(user_logged_in)
def logged_in(sender, request, user, **kwargs) -> None:
    audit(request, "login", AuditEvent.Outcome.OK, "user", user.pk, user.get_username())


@receiver(user_logged_out)
def logged_out(sender, request, user, **kwargs) -> None:
    name = user.get_username() if user else ""
    audit(request, "logout", AuditEvent.Outcome.OK, "user", getattr(user, "pk", ""), name)


@receiver(user_login_failed)
def login_failed(sender, credentials, request=None, **kwargs) -> None:
    attempted = str(credentials.get("username", ""))[:150]
    audit(
        request,
        "login",
        AuditEvent.Outcome.REFUSED,
        "user",
        "",
        attempted,
        "wrong user name or password",
        username=attempted,
    )


@receiver(user_locked_out)
def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    audit(
        request,
        "login.locked_out",
        AuditEvent.Outcome.FORBIDDEN,
        "user",
        "",
        str(username),
        "too many failed logins: locked out for the cool-off period",
        username=str(username),
    )
