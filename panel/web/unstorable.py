"""Refuse requests that carry text no database can store, before any view sees them.

A NUL character (PostgreSQL refuses it in every text column) or a lone surrogate in JSON
(no UTF-8 for it) in the path, the query string, a form field or a JSON body is answered 400
with a message that says which part held it, on SQLite and PostgreSQL alike. It sits inside
the audit middleware, so a refused action is on the audit trail like any other refusal.
Invalid UTF-8 needs nothing here: Django decodes forms and query strings with replacement
characters, and the API refuses a body that is not UTF-8.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from panel.text import unstorable, unstorable_anywhere


class RefuseUnstorableInputMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = unstorable_part(request)
        if where is None:
            return self.get_response(request)
        message = (
            f"The request was refused: its {where} holds a NUL character (\\x00) or a lone "
            "UTF-16 surrogate, which no field accepts. Nothing was changed; send it again "
            "without that character."
        )
        if request.path.startswith("/api/"):
            return JsonResponse({"error": message}, status=400)
        return render(request, "panel/bad_input.html", {"message": message}, status=400)


def unstorable_part(request: HttpRequest) -> str | None:
    """Which part of the request holds unstorable text, or None."""
    if unstorable(request.path):
        return "address (path)"
    if any(unstorable(text) for key, values in request.GET.lists() for text in [key, *values]):
        return "query string"
    if request.content_type == "application/json":
        return "JSON body" if _json_is_unstorable(request.body) else None
    if request.method == "POST":
        fields = request.POST.lists()
        if any(unstorable(text) for key, values in fields for text in [key, *values]):
            return "form"
    return None


def _json_is_unstorable(body: bytes) -> bool:
    # Only a body that escapes a NUL or a surrogate (or has a raw NUL) can hold one: parse
    # just those; a body that does not parse is the API's to refuse.
    if b"\x00" not in body and b"\\u" not in body:
        return False
    try:
        return unstorable_anywhere(json.loads(body))
    except ValueError:
        return b"\x00" in body
