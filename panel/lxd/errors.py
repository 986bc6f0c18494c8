"""Errors from talking to LXD, in words a person can act on."""

from __future__ import annotations

import ssl

import requests
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException


class LXDError(Exception):
    """Anything that went wrong talking to LXD, said in words a person can act on; `endpoint`
    names the server, when known (a migration tells its two hosts apart by it)."""

    def __init__(self, message: str = "", endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class LXDUnreachable(LXDError):
    """LXD did not answer at all (connection refused or reset, timeout, TLS failure): what
    it did with an earlier request is unknown until it answers again."""


def lxd_error(error: BaseException, endpoint: str) -> LXDError:
    """The LXDError for any pylxd/requests/ssl error, unreachable or not, in plain words."""
    unreachable = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ssl.SSLError,
                   ClientConnectionFailed)  # fmt: skip
    kind = LXDUnreachable if isinstance(error, unreachable) else LXDError
    return kind(describe(error, endpoint), endpoint)


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
        return f"The server at {endpoint} refused the request: {text}"
    return f"Talking to {endpoint} failed: {text}"
