"""The Content-Security-Policy header on every response.

A dozen lines instead of django-csp: the panel needs one fixed policy, no nonces (it has no
inline script, handler or style attribute at all: static/panel/panel.js wires every
behaviour from data- attributes) and no per-view exceptions. Django 6.0 brings its own
middleware; this one goes when the panel moves to it."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = (
            "Content-Security-Policy-Report-Only"
            if settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
            else "Content-Security-Policy"
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY:
            response.headers.setdefault(self.header, settings.CONTENT_SECURITY_POLICY)
        return response
