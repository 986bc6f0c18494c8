"""Certificates: the server's (fetched, shown, pinned) and the panel's own client certificate."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from panel.lxd.errors import LXDError


def certificate_fingerprint(pem: str) -> str:
    """SHA-256 of the certificate's DER form, in hex, as `lxc info` and `lxc remote` show it."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def fetch_server_certificate(endpoint: str, timeout: float = 10.0) -> str:
    """The certificate an HTTPS endpoint presents, unverified: to be shown and confirmed."""
    address, port = https_address(endpoint)
    try:
        return ssl.get_server_certificate((address, port), timeout=timeout)
    except (OSError, ssl.SSLError) as error:
        raise LXDError(f"Cannot fetch the certificate of {endpoint}: {error}") from error


def https_address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise LXDError(f"{endpoint} is not an https://address:port URL.")
    return parts.hostname, parts.port or 8443


def new_client_certificate() -> tuple[str, str]:
    """A new client certificate and its private key, both PEM: ECDSA P-384, ten years."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lxd-panel"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"lxd-panel@{socket.gethostname()}"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA384())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return certificate.public_bytes(Encoding.PEM).decode(), key_pem.decode()


def ensure_client_certificate(folder: Path) -> tuple[str, str]:
    """A client certificate kept in files, generated once (the lab's tests and benchmarks use
    one of their own; the panel keeps its identity in the database: panel/hosts/identity.py).
    The key is readable only by its owner."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)  # also when an older run created it with the default mode
    cert_path, key_path = folder / "client.crt", folder / "client.key"
    if cert_path.exists() and key_path.exists():
        return str(cert_path), str(key_path)
    cert_pem, key_pem = new_client_certificate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key_pem)
    cert_path.write_text(cert_pem)
    return str(cert_path), str(key_path)


def private_file(content: str, label: str) -> str:
    """A path to `content` that exists only inside this process: an anonymous in-memory file
    (memfd) named by /proc/self/fd/N, for pylxd, which reads certificates and keys from
    paths. Never on a disk, gone when the process ends, not inherited across exec; a forked
    child (a Celery pool process) keeps the same descriptor and so the same path."""
    fd = os.memfd_create(f"panel-{label}", os.MFD_CLOEXEC)
    os.write(fd, content.encode())
    os.fchmod(fd, 0o600)
    return f"/proc/self/fd/{fd}"
