"""Where a webhook may be posted: not to the panel's own machine or its neighbours.

Any signed-in user, a viewer too, chooses their own webhook URL, and a worker POSTs to it.
Without a check that is a way to make the panel reach what only it can reach: a service on
127.0.0.1 (Redis, PostgreSQL, an agent), a cloud's metadata address (169.254.169.254), the
LXD hosts and the other machines on its private networks. So, unless an admin allows local
addresses (PANEL_WEBHOOK_LOCAL_ADDRESSES=true), only globally routable ones are taken, as
GitLab's webhooks do by default. Stricter than a host endpoint (panel/hosts/endpoints.py),
which may be private because LXD hosts live there; its name rules are reused as they are.

Checked twice: when the URL is saved, on what is written (no DNS lookup in a web request),
and by the worker right before each POST, on every address the name resolves to then. A
name whose DNS answer changes between that lookup and requests' own (DNS rebinding) is not
covered; redirects are never followed (panel/notify/send.py). Hand-written on `ipaddress`:
the SSRF-guarding wrappers of requests are unmaintained, and this is one rule.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from panel.hosts.endpoints import (
    LOOPBACK_NAMES,
    METADATA_NAMES,
    NUMERIC_LABEL,
    IPAddress,
    embedded_ipv4,
)

ALLOW_HINT = (
    "The panel does not post webhooks to this machine or its local networks, so that no "
    "user can make it reach the services beside it; an admin who wants webhooks there sets "
    "PANEL_WEBHOOK_LOCAL_ADDRESSES=true."
)


def is_local(address: IPAddress) -> bool:
    """Loopback, private, link-local, shared, reserved, unspecified or multicast, also when
    an IPv6 address carries such an IPv4 one (mapped, 6to4, NAT64)."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return is_local(embedded)
    return not address.is_global or address.is_multicast


def _address_refusal(host: str, address: IPAddress) -> str:
    if not is_local(address):
        return ""
    shown = host if host == str(address) else f"{host} ({address})"
    return f"{shown} is a local address. {ALLOW_HINT}"


def refusal_on_save(url: str) -> str:
    """Why this URL may not be saved, or '': a local address, a name of this machine or of
    a metadata service, or a number dressed as a name, as it is written."""
    if settings.WEBHOOK_LOCAL_ADDRESSES:
        return ""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _name_refusal(host.lower().rstrip("."))
    return _address_refusal(host, address)


def _name_refusal(name: str) -> str:
    if NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        return f"{name} is a number, not a host name: write the address itself. {ALLOW_HINT}"
    if LOOPBACK_NAMES.match(name) or name in METADATA_NAMES:
        return f"{name} names this machine or a metadata service. {ALLOW_HINT}"
    return ""


def refusal_on_send(url: str) -> str:
    """Why the worker may not post to this URL now, or '': an address its name resolves to
    is local. A name that does not resolve is left to requests, whose error the task
    retries (a DNS failure may pass)."""
    if settings.WEBHOOK_LOCAL_ADDRESSES:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        found = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return ""
    for entry in found:
        refusal = _address_refusal(host, ipaddress.ip_address(str(entry[4][0]).split("%")[0]))
        if refusal:
            return refusal
    return ""
