"""The only module that talks to LXD (and the only importer of pylxd).

Callers describe a host with a `Target` and get plain data back; every failure, whatever
layer it comes from (socket, TLS, HTTP, LXD), is raised as `LXDError` with a message a
person can act on. Web requests never call this module: workers do.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pylxd
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from pylxd.client import get_session_for_url
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException, NotFound

DEFAULT_TIMEOUT = 30.0
# The name the panel's certificate gets in `lxc config trust list` on each host.
NAME = "lxd-panel"


class LXDError(Exception):
    """Anything that went wrong talking to LXD, said in words a person can act on."""


class LXDUnreachable(LXDError):
    """LXD did not answer at all (connection refused or reset, timeout, TLS failure): what
    it did with an earlier request is unknown until it answers again."""


@dataclass(frozen=True)
class Target:
    """How to reach one LXD server: a unix socket path, or an HTTPS URL plus the server
    certificate pinned for it (PEM) and the panel's client certificate files."""

    endpoint: str
    server_certificate: str = ""
    client_cert: tuple[str, str] | None = None
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT

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


def reused_client(target: Target) -> pylxd.Client:
    kept = _kept_client(target)
    return kept if kept is not None else fresh_client(target)


def _kept_client(target: Target) -> pylxd.Client | None:
    cached = _reused_clients().get(target)
    if cached is not None and time.monotonic() - cached[0] < CLIENT_REUSE_SECONDS:
        return cached[1]
    return None


def fresh_client(target: Target) -> pylxd.Client:
    """A new client (LXD's answer to GET /1.0 as of now), kept for the calls that follow."""
    client = connect(target)
    _reused_clients()[target] = (time.monotonic(), client)
    return client


def forget_client(target: Target) -> None:
    """After any failure, start the next call on a fresh connection."""
    _reused_clients().pop(target, None)


def server_facts(target: Target) -> dict:
    """What the server says about itself (`lxc info`), its CPU, pools, profiles, networks,
    as of now. The client is kept: a migration's next calls on this host then skip a TLS
    handshake and a GET /1.0 (about 35 ms on the lab), right before the container starts
    moving. A client this thread kept from calls in the last CLIENT_REUSE_SECONDS (a
    pre-flight, an earlier operation) is asked GET /1.0 again (2 ms) rather than replaced
    (a handshake, 22 ms); if that fails (LXD may have closed the idle connection), a new
    client asks."""
    kept = _kept_client(target)
    if kept is not None:
        try:
            kept.host_info = _get(kept, "/")
            return _facts(kept)
        except LXDError:
            forget_client(target)
    try:
        return _facts(fresh_client(target))
    except LXDError:
        forget_client(target)
        raise


def host_inventory(target: Target) -> tuple[dict, list[dict]]:
    """Facts plus every instance with its state and snapshots, in a handful of requests
    (recursion=2 returns instances, state and snapshots in one answer)."""
    client = connect(target)
    facts = _facts(client)
    if facts["auth"] != "trusted":
        return facts, []
    instances = _get(client, "/instances", recursion=2)
    return facts, [normalise_instance(raw) for raw in instances]


def _facts(client: pylxd.Client) -> dict:
    info = client.host_info
    environment = info.get("environment", {})
    facts = {
        "server": environment.get("server", "lxd"),
        "server_version": environment.get("server_version", ""),
        "server_name": environment.get("server_name", ""),
        "kernel_version": environment.get("kernel_version", ""),
        "architectures": environment.get("architectures", []),
        "driver": environment.get("driver", ""),
        "driver_version": environment.get("driver_version", ""),
        "os": " ".join(filter(None, [environment.get("os_name"), environment.get("os_version")])),
        "storage": environment.get("storage", ""),
        # The server's identity; a host's agent consumes the queue named after it.
        "certificate_fingerprint": environment.get("certificate_fingerprint", ""),
        "addresses": environment.get("addresses", []),
        "api_extensions": info.get("api_extensions", []),
        "auth": info.get("auth", ""),
    }
    if facts["auth"] != "trusted":
        return facts  # the rest needs trust
    resources = _get(client, "/resources")
    facts.update(resource_facts(resources))
    facts["storage_pools"] = [pool["name"] for pool in _get(client, "/storage-pools", 1)]
    facts["profiles"] = [profile["name"] for profile in _get(client, "/profiles", 1)]
    facts["networks"] = [network["name"] for network in _get(client, "/networks", 1)]
    return facts


def resource_facts(resources: dict) -> dict:
    """CPU model and flags, memory and system type from /1.0/resources.

    LXD 5.0 reports no CPU flags here (newer releases do, per core); then `cpu_flags` is
    None and only the host's agent can tell (from /proc/cpuinfo).
    """
    cpu = resources.get("cpu", {})
    sockets = cpu.get("sockets") or [{}]
    flags: set[str] | None = None
    for cpu_socket in sockets:
        for core in cpu_socket.get("cores", []):
            if core.get("flags"):
                flags = (flags or set()) | set(core["flags"])
    return {
        "cpu_model": sockets[0].get("name", ""),
        "cpu_vendor": sockets[0].get("vendor", ""),
        "cpu_architecture": cpu.get("architecture", ""),
        "cpu_threads": cpu.get("total", 0),
        "cpu_flags": sorted(flags) if flags is not None else None,
        "memory_total": resources.get("memory", {}).get("total", 0),
        "system_type": (resources.get("system") or {}).get("type", ""),
    }


def normalise_instance(raw: dict) -> dict:
    """The parts of an instance the panel keeps, in stable names."""
    state = raw.get("state") or {}
    return {
        "name": raw["name"],
        "type": raw.get("type", "container"),
        "status": raw.get("status", ""),
        "architecture": raw.get("architecture", ""),
        "description": raw.get("description", ""),
        "ephemeral": bool(raw.get("ephemeral")),
        "stateful": bool(raw.get("stateful")),
        "created_at": parse_time(raw.get("created_at")),
        "last_used_at": parse_time(raw.get("last_used_at")),
        "profiles": raw.get("profiles", []),
        "expanded_config": raw.get("expanded_config", {}),
        "expanded_devices": raw.get("expanded_devices", {}),
        "state": {
            "pid": state.get("pid", 0),
            "processes": state.get("processes", 0),
            "cpu_usage_ns": (state.get("cpu") or {}).get("usage", 0),
            "memory_usage": (state.get("memory") or {}).get("usage", 0),
            "memory_peak": (state.get("memory") or {}).get("usage_peak", 0),
            "network": state.get("network") or {},
        },
        "snapshots": [
            {
                "name": snapshot["name"].split("/")[-1],
                "created_at": parse_time(snapshot.get("created_at")),
                "expires_at": parse_time(snapshot.get("expires_at")),
                "stateful": bool(snapshot.get("stateful")),
            }
            for snapshot in raw.get("snapshots") or []
        ],
    }


def parse_time(value: str | None) -> dt.datetime | None:
    """LXD's timestamps; its zero times (0001-01-01, and 1970-01-01 for a container never
    started, in 5.0.2) mean 'never'."""
    if not value or value.startswith(("0001-01-01", "1970-01-01T00:00:00")):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def instance_logs(target: Target, name: str, max_bytes: int) -> list[tuple[str, str, bool]]:
    """Every log file LXD keeps for the instance (lxc.log, CRIU dump/restore logs):
    (file name, text, truncated)."""
    client = reused_client(target)
    logs = []
    for path in _get(client, f"/instances/{name}/logs"):
        filename = path.rstrip("/").split("/")[-1]
        response = _raw_get(client, f"/instances/{name}/logs/{filename}", is_api=False)
        data = response.content
        logs.append((filename, data[:max_bytes].decode(errors="replace"), len(data) > max_bytes))
    return logs


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


def trust(target: Target, secret: str) -> None:
    """Make the server trust the panel's client certificate, with a trust password or a
    token (`lxc config trust add`). The secret is used once here and never kept."""
    client = connect(target)
    if client.trusted:
        return
    token = decode_trust_token(secret)
    if token is not None:
        _check_token(token, target)
    cert_pem = Path(target.client_cert[0]).read_bytes() if target.client_cert else b""
    try:
        if token is not None and "explicit_trust_token" in client.host_info["api_extensions"]:
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


def ensure_client_certificate(folder: Path) -> tuple[str, str]:
    """The panel's own client certificate, generated once. The key is readable only by the
    panel's user and is never shown, logged or bundled."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)  # also when an older run created it with the default mode
    cert_path, key_path = folder / "client.crt", folder / "client.key"
    if cert_path.exists() and key_path.exists():
        return str(cert_path), str(key_path)
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
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(Encoding.PEM))
    return str(cert_path), str(key_path)


def _get(client: pylxd.Client, path: str, recursion: int = 0):
    response = _raw_get(client, path, recursion)
    return response.json()["metadata"]


def _raw_get(client: pylxd.Client, path: str, recursion: int = 0, is_api: bool = True):
    node = client.api
    for part in filter(None, path.split("/")):  # "/" is /1.0 itself
        node = node[part]
    try:
        response = node.get(params={"recursion": recursion} if recursion else None, is_api=is_api)
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


def lxd_error(error: BaseException, endpoint: str) -> LXDError:
    """The LXDError for any pylxd/requests/ssl error, unreachable or not, in plain words."""
    unreachable = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ssl.SSLError,
                   ClientConnectionFailed)  # fmt: skip
    kind = LXDUnreachable if isinstance(error, unreachable) else LXDError
    return kind(describe(error, endpoint))


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


# --- Long operations: start without waiting, then poll with bounded long-polls. -----------


@dataclass(frozen=True)
class OperationState:
    """An LXD background operation as last seen: Running, Success, Failure or Cancelled."""

    id: str
    status: str
    may_cancel: bool
    error: str
    metadata: dict

    @property
    def finished(self) -> bool:
        return self.status in ("Success", "Failure", "Cancelled")

    @property
    def progress_text(self) -> str:
        """LXD's human-readable `*_progress` strings, e.g. 'fs_progress: c1: 120MB (15MB/s)'."""
        items = sorted((self.metadata or {}).items())
        return "; ".join(f"{value}" for key, value in items if key.endswith("_progress"))


def start_snapshot(
    target: Target, name: str, snapshot: str, stateful: bool, expires_at: dt.datetime | None
) -> str:
    body: dict = {"name": snapshot, "stateful": stateful}
    if expires_at is not None:
        body["expires_at"] = expires_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return _start(target, "post", f"/instances/{name}/snapshots", body)


def start_restore(target: Target, name: str, snapshot: str, stateful: bool) -> str:
    return _start(target, "put", f"/instances/{name}", {"restore": snapshot, "stateful": stateful})


def start_delete_snapshot(target: Target, name: str, snapshot: str) -> str:
    return _start(target, "delete", f"/instances/{name}/snapshots/{snapshot}", None)


def start_state_change(
    target: Target,
    name: str,
    action: str,
    stateful: bool = False,
    force: bool = False,
    timeout: int = 30,
) -> str:
    """start / stop / restart. pylxd's stop() has no `stateful`, so this PUTs state itself."""
    body = {"action": action, "stateful": stateful, "force": force, "timeout": timeout}
    return _start(target, "put", f"/instances/{name}/state", body)


def wait_operation(target: Target, operation_id: str, seconds: int) -> OperationState | None:
    """Wait at most `seconds` for the operation; its state then, or None when LXD has
    forgotten it (LXD keeps finished operations only for a few seconds)."""
    return _read_operation(target, operation_id, wait_seconds=seconds)


def operation_state(target: Target, operation_id: str) -> OperationState | None:
    """The operation's state now, without waiting (None when LXD forgot it)."""
    return _read_operation(target, operation_id, wait_seconds=None)


def _read_operation(target: Target, operation_id: str, wait_seconds: int | None):
    node = reused_client(target).api.operations[operation_id]
    try:
        if wait_seconds is None:
            response = node.get()
        else:
            response = node.wait.get(params={"timeout": wait_seconds})
    except NotFound:
        return None
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error
    return _operation_state(response.json()["metadata"])


def running_operations(target: Target, description: str) -> set[str]:
    """IDs of the host's running operations with this description (LXD's words)."""
    client = reused_client(target)
    try:
        groups = _get(client, "/operations", recursion=1) or {}
    except LXDError:
        forget_client(target)
        raise
    running = groups.get("running") or []
    return {op["id"] for op in running if op.get("description") == description}


def cancel_operation(target: Target, operation_id: str) -> None:
    client = reused_client(target)
    try:
        client.api.operations[operation_id].delete()
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error


def instance_summary(target: Target, name: str) -> dict | None:
    """Status, saved-state flag and snapshots of one instance, or None when it does not exist."""
    client = reused_client(target)
    try:
        # Not recursion=1: that also collects live state (cgroups, network), about 60 ms.
        raw = _get(client, f"/instances/{name}")
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        forget_client(target)
        raise
    snapshots = _get(client, f"/instances/{name}/snapshots", recursion=1)
    return normalise_instance({**raw, "snapshots": snapshots, "state": None})


def _operation_state(metadata: dict) -> OperationState:
    return OperationState(
        id=metadata.get("id", ""),
        status=metadata.get("status", ""),
        may_cancel=bool(metadata.get("may_cancel")),
        error=metadata.get("err", "") or "",
        metadata=metadata.get("metadata") or {},
    )


def _start(target: Target, method: str, path: str, body: dict | None) -> str:
    """Send a request that LXD runs in the background; return the operation id."""
    client = reused_client(target)
    node = client.api
    for part in path.strip("/").split("/"):
        node = node[part]
    try:
        response = getattr(node, method)(json=body) if body is not None else node.delete()
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error
    operation = response.json().get("operation", "")
    if not operation:
        raise LXDError(f"{target.endpoint} did not start a background operation for {path}.")
    return operation.rstrip("/").split("/")[-1]


# --- Migration: the panel runs the flow itself (pylxd's migrate() deletes the source as soon
# as the target's create call returns, before anything is verified). ------------------------


def instance_definition(target: Target, name: str) -> dict:
    """The instance as LXD stores it (own config and devices, not expanded), to recreate it."""
    client = reused_client(target)
    try:
        return _get(client, f"/instances/{name}")
    except LXDError as error:
        if "not found" not in str(error).lower():  # a 404 is an answer: keep the connection
            forget_client(target)
        raise


def instance_status(target: Target, name: str) -> str | None:
    """Running / Frozen / Stopped..., or None when there is no such instance. Cheap: no
    live state is collected, so it can be sampled several times a second."""
    try:
        return instance_definition(target, name)["status"]
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        raise


def server_certificate(target: Target) -> str:
    """The server's own certificate (PEM), which the other side of a migration pins."""
    return reused_client(target).host_info["environment"]["certificate"]


def start_migration_source(
    target: Target,
    name: str,
    live: bool,
    push_to: dict | None = None,
    unfrozen_first_copy: bool = False,
):
    """Make the source offer (pull) or push the instance; returns (operation id, secrets).
    `unfrozen_first_copy` sends `allow_inconsistent` (API extension
    `cluster_migration_inconsistent_copy`): see workers/migrations.py for why a live
    migration wants it."""
    body: dict = {"migration": True, "live": live}
    if unfrozen_first_copy:
        body["allow_inconsistent"] = True
    if push_to is not None:
        body["target"] = push_to
    response = _post_operation(target, f"/instances/{name}", body)
    return response["id"], response.get("metadata") or {}


def start_migration_target(target: Target, body: dict):
    """Create the instance on the target from a migration source; returns (id, secrets)."""
    response = _post_operation(target, "/instances", body)
    return response["id"], response.get("metadata") or {}


def migration_target_body(
    definition: dict, new_name: str, live: bool, pool: str, source: dict
) -> dict:
    """The target's create request: the source's own config, devices and profiles, the
    saved-state flag (so a checkpointed container restores when started), and the chosen
    storage pool for its root disk."""
    devices = {key: dict(value) for key, value in definition.get("devices", {}).items()}
    if pool:
        roots = [d for d in devices.values() if d.get("type") == "disk" and d.get("path") == "/"]
        root = roots[0] if roots else None
        if root is None:
            devices["root"] = {"type": "disk", "path": "/", "pool": pool}
        else:
            root["pool"] = pool
    return {
        "name": new_name,
        "type": definition.get("type", "container"),
        "architecture": definition.get("architecture", ""),
        "config": definition.get("config", {}),
        "devices": devices,
        "profiles": definition.get("profiles", []),
        "ephemeral": definition.get("ephemeral", False),
        "description": definition.get("description", ""),
        "stateful": definition.get("stateful", False),
        "source": {"type": "migration", "live": live, **source},
    }


def migration_peer(target: Target, operation_id: str, secrets: dict) -> dict:
    """What the other end of a migration needs to join this end's operation: its URL, the
    server certificate to pin, and the websocket secrets."""
    return {
        "operation": f"{target.endpoint.rstrip('/')}/1.0/operations/{operation_id}",
        "certificate": server_certificate(target),
        "secrets": secrets,
    }


def start_delete_instance(target: Target, name: str) -> str:
    return _start(target, "delete", f"/instances/{name}", None)


def _post_operation(target: Target, path: str, body: dict) -> dict:
    """POST something LXD runs in the background and return the operation's metadata."""
    client = reused_client(target)
    node = client.api
    for part in path.strip("/").split("/"):
        node = node[part]
    try:
        response = node.post(json=body)
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error
    return response.json()["metadata"]


# --- Bug bundles ---


def bundle_server_info(target: Target) -> dict:
    """Everything GET /1.0 says (what `lxc info` prints), as LXD gave it."""
    client = reused_client(target)
    try:
        return client.api.get().json()["metadata"]
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error


def bundle_instance(target: Target, name: str) -> dict | None:
    """The instance with its expanded config, state and snapshots (`lxc info <name>` and
    `lxc config show --expanded <name>` in one answer), or None when it is not on this host."""
    client = reused_client(target)
    try:
        return _get(client, f"/instances/{name}", recursion=1)
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        forget_client(target)
        raise


# The only files the panel ever reads inside a container: it never runs arbitrary commands.
READABLE_IN_CONTAINER = ("/proc/self/mountinfo", "/proc/1/status")


def container_mountinfo(target: Target, name: str, timeout: int = 10) -> str:
    """`lxc exec <name> -- cat /proc/self/mountinfo`, for the bug bundle."""
    return read_in_container(target, name, "/proc/self/mountinfo", timeout)


def container_init_state(target: Target, name: str, timeout: int = 10) -> str:
    """The `State:` of the container's init, e.g. 'S (sleeping)'. 't (tracing stop)' means a
    tracer holds it: after a failed live migration that is CRIU's dump, still waiting in
    LXD's action script, while LXD reports the container as Running."""
    status = read_in_container(target, name, "/proc/1/status", timeout)
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in status.splitlines()
            if line.startswith("State:")
        ),
        "",
    )


def read_in_container(target: Target, name: str, path: str, timeout: int = 10) -> str:
    """`cat <path>` in a running container without a websocket: LXD records the output into
    log files of the instance, read here and then deleted."""
    if path not in READABLE_IN_CONTAINER:
        raise LXDError(f"The panel does not read {path} inside containers.")
    body = {
        "command": ["cat", path],
        "environment": {},
        "interactive": False,
        "record-output": True,
        "wait-for-websocket": False,
    }
    operation_id = _start(target, "post", f"/instances/{name}/exec", body)
    state = wait_operation(target, operation_id, seconds=timeout)
    if state is None or not state.finished:
        raise LXDError(f"`cat {path}` in {name} did not finish in {timeout} s.")
    if state.status != "Success":
        raise LXDError(f"`cat {path}` in {name} failed: {state.error}")
    outputs = state.metadata.get("output") or {}
    client = reused_client(target)
    text = ""
    for stream, output_path in sorted(outputs.items()):
        filename = output_path.rstrip("/").split("/")[-1]
        response = _raw_get(client, f"/instances/{name}/logs/{filename}", is_api=False)
        if stream == "1":
            text = response.content.decode(errors="replace")
        with contextlib.suppress(Exception):  # a leftover log file is harmless
            client.api.instances[name].logs[filename].delete()
    if state.metadata.get("return", 0) != 0:
        raise LXDError(f"`cat {path}` in {name} exited {state.metadata['return']}.")
    return text
