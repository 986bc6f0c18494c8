"""Seal a secret (a trust password or token) for its one trip through the broker.

The secret must reach the worker that uses it, but Redis may write its queue to disk: the
message carries it encrypted with a key derived from SECRET_KEY, and it expires quickly, so a
copy left in a Redis file is useless. The database never sees it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

SEALED_SECRET_TTL_SECONDS = 600


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"panel.sealed:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str | None:
    """The secret, or None when it expired or was not sealed by this panel."""
    try:
        return _fernet().decrypt(sealed.encode(), ttl=SEALED_SECRET_TTL_SECONDS).decode()
    except InvalidToken:
        return None
