"""/healthz, the load balancer's and the container healthcheck's question: is this replica
alive and its database answering?

Answered by the first middleware, before Django checks the Host header and before the HTTPS
redirect: a probe comes from a load balancer or from inside the container, by IP address
(127.0.0.1 is in no production ALLOWED_HOSTS) and over plain HTTP (PANEL_SECURE=true would
answer 301). It says nothing but "ok" or the kind of database failure.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

PATH = "/healthz"


def liveness(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any database failure means "not healthy"
        return JsonResponse({"database": f"failing: {error.__class__.__name__}"}, status=503)
    return JsonResponse({"database": "ok"})


class LivenessMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == PATH and request.method in ("GET", "HEAD"):
            return liveness(request)
        return self.get_response(request)
