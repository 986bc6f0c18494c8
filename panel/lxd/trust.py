"""Making a server trust the panel's client certificate, with a trust password or a token.

LXD 5.0 takes either (a token sent whole in the password field); LXD 5.21 announces
`explicit_trust_token` and takes a token in its own field; Incus has no passwords and takes
only a token, in `trust_token`, with the certificate from the TLS connection itself (pylxd
2.4.2 sends the token as a password there, which Incus refuses: lab/README.md)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from pathlib import Path

from pylxd.exceptions import LXDAPIException

from panel.lxd.certificates import certificate_fingerprint
from panel.lxd.connection import Target, connect
from panel.lxd.errors import LXDError, lxd_error
from panel.lxd.instances import parse_time
from panel.lxd.platforms import Platform, identify, platform_named

# The name the panel's certificate gets in `lxc config trust list` on each host.
NAME = "lxd-panel"


def trust(target: Target, secret: str) -> None:
    """Make the server trust the panel's client certificate, with a trust password or a
    token (`lxc config trust add`). The secret is used once here and never kept."""
    client = connect(target)
    if client.trusted:
        return
    extensions = client.host_info.get("api_extensions") or []
    platform = identify(extensions)
    token = decode_trust_token(secret)
    if token is None and not platform.trust_passwords:
        raise LXDError(no_passwords(platform))
    if token is not None:
        _check_token(token, target)
    cert_pem = Path(target.client_cert[0]).read_bytes() if target.client_cert else b""
    try:
        if token is not None and not platform.trust_passwords:
            client.api.certificates.post(json={"type": "client", "trust_token": secret})
        elif token is not None and "explicit_trust_token" in extensions:
            client.certificates.create(password="", cert_data=cert_pem, secret=secret, name=NAME)
        else:
            # LXD 5.0 decodes a token sent whole in the password field (verified on 5.0.2;
            # sending only the token's secret is refused).
            client.certificates.create(password=secret, cert_data=cert_pem, name=NAME)
    except LXDAPIException as error:
        what = "token" if token is not None else "trust password"
        raise LXDError(
            f"{target.endpoint} refused the {what} ({error}). Check it (a token works once "
            "and may expire), then try again."
        ) from error
    except Exception as error:
        raise lxd_error(error, target.endpoint) from error
    if not connect(target).trusted:
        raise LXDError(
            f"{target.endpoint} accepted the request but still does not trust the panel."
        )


def no_passwords(platform: Platform) -> str:
    return (
        f"{platform.name} has no trust passwords: a token is the only way. On the host, run "
        f"`{platform.trust_add_command}` and paste the token it prints."
    )


def decode_trust_token(secret: str) -> dict | None:
    """A token from `lxc config trust add` is base64 JSON; a trust password is not."""
    try:
        token = json.loads(base64.b64decode(secret.strip() + "==", validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if isinstance(token, dict) and "secret" in token:
        return token
    return None


def _check_token(token: dict, target: Target) -> None:
    expires = parse_time(token.get("expires_at"))
    if expires and expires < dt.datetime.now(dt.UTC):
        raise LXDError(f"This token expired at {expires:%Y-%m-%d %H:%M} UTC: create a new one.")
    pinned = certificate_fingerprint(target.server_certificate) if target.server_certificate else ""
    if token.get("fingerprint") and pinned and token["fingerprint"] != pinned:
        raise LXDError(
            "The token was issued by a server whose certificate is not the one you confirmed: "
            "refusing, the connection may be intercepted."
        )


def identify_server(target: Target) -> Platform:
    """LXD or Incus, asked before any trust: an untrusted GET /1.0 lists the server's API
    extensions (its `environment`, with the server's name, needs trust)."""
    client = connect(target)
    info = client.host_info or {}
    server = (info.get("environment") or {}).get("server")
    return platform_named(server) if server else identify(info.get("api_extensions") or [])
