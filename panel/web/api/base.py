"""The JSON API's transport: bearer-token authentication, JSON refusals, bounded bodies,
pagination and filters. The API adds transport, never rules (panel/web/api/views.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from panel.accounts.tokens import authenticate
from panel.web.filters import Rows, filter_errors

MAX_BODY_BYTES = 64 * 1024
PAGE_SIZE = 100


class ApiError(Exception):
    """A refusal with its HTTP status, answered as {"error": message}."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def token_required(view: Callable) -> Callable:
    """Authenticate by `Authorization: Bearer <token>` only (panel/accounts/tokens.py decides
    which tokens count and what a read-only one may do), and answer every refusal as JSON.

    The API never looks at the session cookie: request.user is the token's user or the
    request is refused. So there is nothing for CSRF to ride on (a browser never adds an
    Authorization header on its own to a cross-site request), which is why it is exempt.
    """

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        found = authenticate(request)
        if found is None:
            response = error(
                401,
                "Send a valid API token: Authorization: Bearer <token> (this one is unknown, "
                "expired or revoked).",
            )
            response["WWW-Authenticate"] = 'Bearer realm="lxd-panel"'
            return response
        request.user, token = found
        if not token.allows(request.method or ""):
            return error(403, "This token is read-only: make a read-and-act token to do this.")
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


def form_errors(form: forms.Form, refused: str = "Not started") -> JsonResponse:
    errors = {
        field: [str(message) for message in messages] for field, messages in form.errors.items()
    }
    summary = "; ".join(message for messages in errors.values() for message in messages)
    return error(400, f"{refused}: {summary}", errors=errors)


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


def filtered(
    request: HttpRequest, filterset_class: type[django_filters.FilterSet], queryset: Rows
) -> Rows:
    """The list's rows through its shared filter (panel/web/filters.py); 400 when invalid."""
    filterset = filterset_class(request.GET, queryset=queryset)
    if not filterset.is_valid():
        raise ApiError(400, "Invalid filter.", errors=filter_errors(filterset))
    return filterset.qs


def created(request: HttpRequest, body: Mapping[str, Any], status: int = 201) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Location"] = body["url"]
    return response
