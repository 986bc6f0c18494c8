"""The panel's LXD client identity: one certificate and key for every worker on every machine.

Each LXD host trusts the one certificate that was enrolled, so the identity lives in the
database, where every process finds it; the private key is sealed with a key derived from
PANEL_IDENTITY_KEY, or from SECRET_KEY when that is not set (a dedicated key lets an admin
rotate SECRET_KEY without losing every host's trust). pylxd reads certificates from paths:
each process materialises the pair once into in-memory files of its own (`lxd.private_file`),
never into a data folder.

Installs from before kept the pair in files under PANEL_CLIENT_CERT_DIR: the first use
imports them, so enrolled hosts keep trusting the panel, and then deletes the key file.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import IntegrityError, transaction

from panel import lxd
from panel.hosts.models import ClientIdentity

logger = logging.getLogger(__name__)

IDENTITY_NAME = "panel"


class IdentityUnreadable(lxd.LXDError):
    """The sealed key does not open with this process's key: settings differ between machines."""


def _fernet() -> Fernet:
    secret = settings.PANEL_IDENTITY_KEY or settings.SECRET_KEY
    digest = hashlib.sha256(f"panel.identity:{secret}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_key(key_pem: str) -> str:
    return _fernet().encrypt(key_pem.encode()).decode()


def _open(identity: ClientIdentity) -> str:
    try:
        return _fernet().decrypt(identity.sealed_key.encode()).decode()
    except InvalidToken:
        which = "PANEL_IDENTITY_KEY" if settings.PANEL_IDENTITY_KEY else "PANEL_SECRET_KEY"
        raise IdentityUnreadable(
            "The panel's LXD client key in the database was sealed with another key than this "
            f"process has: set the same {which} on every machine of the panel (web, workers, "
            "beat) as on the one that created it. Nothing was sent to any host."
        ) from None


def _legacy_files() -> tuple[Path, Path]:
    folder = Path(settings.PANEL_CLIENT_CERT_DIR)
    return folder / "client.crt", folder / "client.key"


def _new_pair() -> tuple[str, str]:
    """The pair an older install kept in files, or a new one."""
    cert_path, key_path = _legacy_files()
    if cert_path.exists() and key_path.exists():
        logger.info("importing the panel's client certificate from %s", cert_path.parent)
        return cert_path.read_text(), key_path.read_text()
    return lxd.new_client_certificate()


def client_identity() -> ClientIdentity:
    """The panel's identity, created on first use (by whichever process gets there first)."""
    identity = ClientIdentity.objects.filter(name=IDENTITY_NAME).first()
    if identity is None:
        cert_pem, key_pem = _new_pair()
        try:
            with transaction.atomic():
                identity = ClientIdentity.objects.create(
                    name=IDENTITY_NAME,
                    certificate=cert_pem,
                    sealed_key=seal_key(key_pem),
                    fingerprint=lxd.certificate_fingerprint(cert_pem),
                )
        except IntegrityError:  # another process created it meanwhile: use theirs
            identity = ClientIdentity.objects.get(name=IDENTITY_NAME)
    _forget_legacy_key(identity)
    return identity


def _forget_legacy_key(identity: ClientIdentity) -> None:
    """Once the database holds the identity an old install kept in files, delete its key."""
    cert_path, key_path = _legacy_files()
    if not (key_path.exists() and cert_path.exists()):
        return
    if lxd.certificate_fingerprint(cert_path.read_text()) == identity.fingerprint:
        key_path.unlink()
        logger.info("deleted %s: the client key now lives in the database", key_path)


# Per process: fingerprint -> (certificate path, key path), both in-memory files.
_materialised: dict[str, tuple[str, str]] = {}


def client_cert_files() -> tuple[str, str]:
    """Paths to the identity's certificate and key for pylxd, private to this process."""
    identity = client_identity()
    files = _materialised.get(identity.fingerprint)
    if files is None:
        files = (
            lxd.private_file(identity.certificate, "client.crt"),
            lxd.private_file(_open(identity), "client.key"),
        )
        _materialised[identity.fingerprint] = files
    return files


def client_certificate_pem() -> str:
    return client_identity().certificate
