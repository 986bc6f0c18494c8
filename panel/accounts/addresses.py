"""The address of the person's machine, for the audit trail and the login throttle.

Behind a TLS proxy every request comes from the proxy's address: the audit trail would name
the proxy, and django-axes would lock the admin out for everyone after five wrong passwords
from anybody. With PANEL_TRUSTED_PROXIES=N the panel believes the last N hops: each proxy
appends the address it saw to X-Forwarded-For, so the client is the N-th entry from the right
(the ones further left are whatever the client chose to send, and are ignored).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    remote = _address(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.TRUSTED_PROXIES
    if not proxies:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < proxies or not forwarded[-1].strip():
        return remote  # it did not come through every proxy: only the peer is known
    return _address(forwarded[-proxies]) or remote
