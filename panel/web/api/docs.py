"""What the API says about itself, without a token: `/api/` lists the endpoints,
`/api/schema/` is the OpenAPI document, `/api/docs/` the same as a page to read. And the
API's answer when the panel itself fails: JSON, like every other refusal."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views import defaults
from django.views.decorators.http import require_GET

from panel.web.api.schema import api_patterns, describe, document
from panel.web.api.shapes import IndexShape

logger = logging.getLogger(__name__)


@describe("GET", "This list of endpoints, and where the schema is.", response=IndexShape,
          public=True)  # fmt: skip
@require_GET
def index(request: HttpRequest) -> JsonResponse:
    endpoints = [
        {"method": doc.method, "path": path, "summary": doc.summary}
        for path, _, docs in api_patterns()
        for doc in docs
    ]
    return JsonResponse(
        {
            "name": "LXD panel API",
            "schema": request.build_absolute_uri(reverse("api-schema")),
            "docs": request.build_absolute_uri(reverse("api-docs")),
            "endpoints": endpoints,
        }
    )


@require_GET
def schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(document(), json_dumps_params={"indent": 1})


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    """The schema as a page: plain HTML from the same document, no script (the panel's
    Content-Security-Policy would refuse Swagger UI's inline one anyway)."""
    spec = document()
    operations = [
        {
            "path": path,
            "method": method.upper(),
            "body": operation.get("requestBody", {}).get("content", {}).get("application/json"),
            **operation,
        }
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    context = {"spec": spec, "operations": operations}
    return render(request, "panel/api/docs.html", context)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the API answers JSON (a script reads it), the pages the usual page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "The panel failed on this request; its log has the details."}, status=500
        )
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400 (a refused Host header, a request Django finds suspicious), in JSON too."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)
