"""The only module that talks to LXD (and the only importer of pylxd).

Callers describe a host with a `Target` and get plain data back; every failure, whatever
layer it comes from (socket, TLS, HTTP, LXD), is raised as `LXDError` with a message a
person can act on. Web requests never call this module: workers do.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import pylxd
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pylxd.client import get_session_for_url
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException

DEFAULT_TIMEOUT = 30.0


class LXDError(Exception):
    """Anything that went wrong talking to LXD, said in words a person can act on."""


@dataclass(frozen=True)
class Target:
    """How to reach one LXD server: a unix socket path, or an HTTPS URL plus the server
    certificate pinned for it (PEM) and the panel's client certificate files."""

    endpoint: str
    server_certificate: str = ""
    client_cert: tuple[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def is_unix_socket(self) -> bool:
        return self.endpoint.startswith("/")


def certificate_fingerprint(pem: str) -> str:
    """SHA-256 of the certificate's DER form, in hex, as `lxc info` and `lxc remote` show it."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def connect(target: Target) -> pylxd.Client:
    """An authenticated-as-far-as-possible pylxd client for the target."""
    try:
        if target.is_unix_socket:
            if not Path(target.endpoint).exists():
                raise LXDError(f"No LXD socket at {target.endpoint}: is the LXD daemon running?")
            return pylxd.Client(endpoint=target.endpoint, timeout=target.timeout)
        return pylxd.Client(
            endpoint=target.endpoint,
            timeout=target.timeout,
            session=_pinned_https_session(target),
            cert=target.client_cert,
        )
    except LXDError:
        raise
    except Exception as error:  # pylxd raises many kinds; all end here with words
        raise LXDError(describe(error, target.endpoint)) from error


def server_facts(target: Target) -> dict:
    """What the server says about itself (`lxc info`): version, kernel, extensions."""
    client = connect(target)
    info = client.host_info
    environment = info.get("environment", {})
    return {
        "server_version": environment.get("server_version", ""),
        "server_name": environment.get("server_name", ""),
        "kernel_version": environment.get("kernel_version", ""),
        "architectures": environment.get("architectures", []),
        "driver_version": environment.get("driver_version", ""),
        "api_extensions": info.get("api_extensions", []),
        "auth": info.get("auth", ""),
    }


def _pinned_https_session(target: Target) -> requests.Session:
    if not target.server_certificate:
        raise LXDError(
            f"{target.endpoint} has no pinned server certificate yet: "
            "confirm its fingerprint when adding the host."
        )
    pinned_file = _pinned_certificate_file(target.server_certificate)
    session = get_session_for_url(target.endpoint, verify=str(pinned_file), cert=target.client_cert)
    # Machines that set REQUESTS_CA_BUNDLE would otherwise replace our pinned certificate
    # with the CA bundle, and pinning would fail (or worse, check the wrong thing).
    session.trust_env = False
    return session


def _pinned_certificate_file(pem: str) -> Path:
    """pylxd's TLS adapter reads the pinned certificate from a file; keep one per fingerprint."""
    from django.conf import settings

    folder = Path(settings.PANEL_CLIENT_CERT_DIR) / "servers"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{certificate_fingerprint(pem)}.crt"
    if not path.exists():
        path.write_text(pem)
    return path


def describe(error: BaseException, endpoint: str) -> str:
    """Turn any pylxd/requests/ssl error into a sentence naming the endpoint."""
    text = str(error) or error.__class__.__name__
    if "Fingerprints did not match" in text or "fingerprint" in text.lower():
        return (
            f"The server certificate of {endpoint} does not match the pinned one: the connection "
            "was refused because it may be intercepted. If the server's certificate really "
            "changed, remove the host and add it again to confirm the new fingerprint."
        )
    if isinstance(error, requests.exceptions.Timeout):
        return f"{endpoint} did not answer in time ({text})."
    if isinstance(error, (requests.exceptions.ConnectionError, ClientConnectionFailed)):
        return f"Cannot connect to {endpoint}: {text}"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {endpoint} failed: {text}"
    if isinstance(error, LXDAPIException):
        return f"LXD at {endpoint} refused the request: {text}"
    return f"Talking to {endpoint} failed: {text}"
