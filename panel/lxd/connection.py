"""Reaching one LXD server: the `Target`, the pinned HTTPS session, and the per-thread
client cache that lets an operation's many small calls share one TLS connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pylxd
import requests
from pylxd.client import get_session_for_url

from panel.lxd.certificates import certificate_fingerprint
from panel.lxd.errors import LXDError, LXDUnreachable, lxd_error

DEFAULT_TIMEOUT = 30.0
# Reads that are asked again and again while an operation runs (its status, LXD's operation)
# give up sooner than a request that makes LXD work: a cut link must not hold a poll for the
# whole request timeout. (connect, read) in seconds.
POLL_TIMEOUT = (5.0, 10.0)


@dataclass(frozen=True)
class Target:
    """How to reach one LXD server: a unix socket path, or an HTTPS URL plus the server
    certificate pinned for it (PEM) and the panel's client certificate files."""

    endpoint: str
    server_certificate: str = ""
    client_cert: tuple[str, str] | None = None
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    # Asked before every request made on this target: a worker checks that it still owns
    # its operation, and raises to stop. Not part of the identity, so clients are shared.
    guard: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @property
    def is_unix_socket(self) -> bool:
        return self.endpoint.startswith("/")


def connect(target: Target) -> pylxd.Client:
    """An authenticated-as-far-as-possible pylxd client for the target."""
    try:
        if target.is_unix_socket:
            if not Path(target.endpoint).exists():
                raise LXDUnreachable(
                    f"No LXD socket at {target.endpoint}: is the LXD daemon running?"
                )
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
        raise lxd_error(error, target.endpoint) from error


# Operations make many small calls in a row (start, poll, verify); a new client costs a TLS
# handshake and a GET /1.0 each time, about 30 ms here, so they reuse one for a short while.
# Facts need LXD's current answer to GET /1.0: `server_facts` asks it again on a kept client
# (or makes a new one) and keeps the client for the calls that follow. Trust always uses a
# new client.
CLIENT_REUSE_SECONDS = 30.0


# Per thread: a migration's clean-up polls the source from one thread while another waits on
# its LXD operation, and a requests session is not promised to be thread-safe.
_per_thread = threading.local()


def _reused_clients() -> dict[Target, tuple[float, pylxd.Client]]:
    return _per_thread.__dict__.setdefault("clients", {})


def lend_clients() -> dict:
    """This thread's clients, for helper threads that work while this one only waits, each on
    other hosts (`borrow_clients`): they then skip a TLS handshake each."""
    return _reused_clients()


def borrow_clients(clients: dict) -> None:
    _per_thread.clients = clients


def check_guard(target: Target) -> None:
    if target.guard is not None:
        target.guard()


def reused_client(target: Target) -> pylxd.Client:
    kept = _kept_client(target)
    if kept is None:
        return fresh_client(target)
    check_guard(target)
    return kept


def _kept_client(target: Target) -> pylxd.Client | None:
    cached = _reused_clients().get(target)
    if cached is not None and time.monotonic() - cached[0] < CLIENT_REUSE_SECONDS:
        return cached[1]
    return None


def fresh_client(target: Target) -> pylxd.Client:
    """A new client (LXD's answer to GET /1.0 as of now), kept for the calls that follow."""
    check_guard(target)
    client = connect(target)
    _reused_clients()[target] = (time.monotonic(), client)
    return client


def forget_client(target: Target) -> None:
    """After any failure, start the next call on a fresh connection."""
    _reused_clients().pop(target, None)


def _get(client: pylxd.Client, path: str, recursion: int = 0, timeout=None):
    response = _raw_get(client, path, recursion, timeout=timeout)
    return response.json()["metadata"]


def _raw_get(
    client: pylxd.Client,
    path: str,
    recursion: int = 0,
    is_api: bool = True,
    stream: bool = False,
    timeout=None,
):
    """`stream`: the body is read later, in capped chunks (log files); `timeout` replaces
    the client's for this request."""
    node = client.api
    for part in filter(None, path.split("/")):  # "/" is /1.0 itself
        node = node[part]
    params = {"recursion": recursion} if recursion else None
    extra = {"timeout": timeout} if timeout is not None else {}
    try:
        response = node.get(params=params, is_api=is_api, stream=stream, **extra)
    except Exception as error:
        raise lxd_error(error, client.api._api_endpoint) from error
    return response


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
