"""LXD's background operations: start without waiting, then poll with bounded long-polls."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pylxd.exceptions import LXDAPIException, NotFound

from panel.lxd.connection import POLL_TIMEOUT, Target, _get, forget_client, reused_client
from panel.lxd.errors import LXDError, lxd_error

# LXD's progress strings (shared/ioprogress, units.GetByteSizeString): "c1: 120.00MB
# (15.00MB/s)" for a transfer, "Unpack: 45% (3.20GB/s)" where the total is known.
_AMOUNT = r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[kKMGTPE]?i?B)"
_PERCENT = r"(?P<percent>\d+(?:\.\d+)?)%"
_RATE = r"\(\s*(?P<rate>\d+(?:\.\d+)?)\s*(?P<rate_unit>[kKMGTPE]?i?B)/s\s*\)"
_PROGRESS = re.compile(rf"(?:{_AMOUNT}|{_PERCENT})\s*(?:{_RATE})?")
# WAIT_ANSWERS_ERRORS: LXD 5.0's /wait answers the operation (running, or failed with its
# `err`). Incus 6.0's answers an error instead, both when the timeout passes first
# ("context deadline exceeded", the operation running on) and when the operation failed
# (its own error): its handler returns what op.Wait(ctx) returned. Seen on the lab's Incus
# 6.0.4: every operation longer than one poll, and every failed one, ended "refused". So an
# error from /wait is answered by reading the operation without waiting, which says which.
_POWERS = {"": 0, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def _bytes(number: str, unit: str) -> int:
    base = 1024 if "i" in unit else 1000
    return int(float(number) * base ** _POWERS[unit.rstrip("B").rstrip("i")])


@dataclass(frozen=True)
class Transfer:
    """What a progress string says: bytes moved so far, their rate, or a percentage."""

    bytes: int | None = None
    bytes_per_second: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> Transfer:
        """The last figure in `text` (LXD reports one per running transfer)."""
        matches = list(_PROGRESS.finditer(text or ""))
        if not matches:
            return cls()
        found = matches[-1]
        amount, percent, rate = found["amount"], found["percent"], found["rate"]
        return cls(
            bytes=_bytes(amount, found["unit"]) if amount else None,
            bytes_per_second=_bytes(rate, found["rate_unit"]) if rate else None,
            percent=min(float(percent), 100.0) if percent else None,
        )


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

    @property
    def transfer(self) -> Transfer:
        return Transfer.parse(self.progress_text)


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


def start_delete_instance(target: Target, name: str) -> str:
    return _start(target, "delete", f"/instances/{name}", None)


def instance_init_pid(target: Target, name: str) -> int | None:
    """The host PID of the container's init (None when it does not run): the same PID after
    a failed migration means the same processes went on running."""
    client = reused_client(target)
    try:
        state = _get(client, f"/instances/{name}/state", timeout=POLL_TIMEOUT)
    except LXDError:
        forget_client(target)
        raise
    return state.get("pid") or None


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
            response = node.get(timeout=POLL_TIMEOUT)
        else:
            connect, read = POLL_TIMEOUT
            response = node.wait.get(
                params={"timeout": wait_seconds}, timeout=(connect, read + wait_seconds)
            )
    except NotFound:
        return None
    except LXDAPIException as error:
        if wait_seconds is not None:  # Incus: see WAIT_ANSWERS_ERRORS
            return _read_operation(target, operation_id, wait_seconds=None)
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error
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
