"""What a server says about itself and its instances: facts, inventory, one instance's
status, definition and logs, and what bug bundles read."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import unquote

import pylxd

from panel.lxd.connection import (
    POLL_TIMEOUT,
    Target,
    _get,
    _kept_client,
    _raw_get,
    check_guard,
    connect,
    forget_client,
    fresh_client,
    reused_client,
)
from panel.lxd.errors import LXDError, lxd_error

HARDWARE_FACTS = ("cpu_model", "cpu_vendor", "cpu_architecture", "cpu_threads", "cpu_flags",
                  "memory_total", "system_type")  # fmt: skip


def server_facts(target: Target, hardware: dict | None = None) -> dict:
    """What the server says about itself (`lxc info`), its CPU, pools, profiles, networks,
    as of now. With `hardware` (HARDWARE_FACTS as an earlier answer gave them), the CPU and
    memory are taken from it instead of asked again: /1.0/resources is the slowest of these
    requests, and a migration's re-check, moments after its pre-flight, needs no new one.
    The client is kept: a migration's next calls on this host then skip a TLS handshake and
    a GET /1.0 (about 35 ms on the lab), right before the container starts moving. A client
    this thread kept from calls in the last CLIENT_REUSE_SECONDS (a pre-flight, an earlier
    operation) is asked GET /1.0 again (2 ms) rather than replaced (a handshake, 22 ms); if
    that fails (LXD may have closed the idle connection), a new client asks."""
    check_guard(target)
    kept = _kept_client(target)
    if kept is not None:
        try:
            kept.host_info = _get(kept, "/")
            return _facts(kept, hardware)
        except LXDError:
            forget_client(target)
    try:
        return _facts(fresh_client(target), hardware)
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


def _facts(client: pylxd.Client, hardware: dict | None = None) -> dict:
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
        # Incus gives containers idmapped root filesystems where this says "true", which
        # CRIU cannot restore (panel/hosts/capabilities.py).
        "kernel_features": environment.get("kernel_features") or {},
        # The server's identity; a host's agent consumes the queue named after it.
        "certificate_fingerprint": environment.get("certificate_fingerprint", ""),
        "addresses": environment.get("addresses", []),
        "api_extensions": info.get("api_extensions", []),
        "auth": info.get("auth", ""),
    }
    if facts["auth"] != "trusted":
        return facts  # the rest needs trust
    if hardware and all(key in hardware for key in HARDWARE_FACTS):
        facts.update({key: hardware[key] for key in HARDWARE_FACTS})
    else:
        facts.update(resource_facts(_get(client, "/resources")))
    pools = _get(client, "/storage-pools", 1)
    facts["storage_pools"] = [pool["name"] for pool in pools]
    # The driver decides how a migration moves the filesystem (panel/operations/storage.py).
    facts["storage_pool_drivers"] = {pool["name"]: pool.get("driver", "") for pool in pools}
    # Names only: with recursion=1 LXD also lists every instance using each one (`used_by`).
    facts["profiles"] = [_name_of(url) for url in _get(client, "/profiles")]
    facts["networks"] = [_name_of(url) for url in _get(client, "/networks")]
    return facts


def _name_of(url: str) -> str:
    """'/1.0/profiles/my%20profile' -> 'my profile'."""
    return unquote(url.rstrip("/").rsplit("/", 1)[-1])


def resource_facts(resources: dict) -> dict:
    """CPU model and flags, memory (total and in use: what a maintenance's target choice
    weighs) and system type from /1.0/resources.

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
        "memory_used": resources.get("memory", {}).get("used", 0),
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
        # `or`: Incus 6.0.4 lists an instance in its Error state with these as null (the lab:
        # a copy whose cross-platform restore failed), which the inventory cannot store.
        "profiles": raw.get("profiles") or [],
        "expanded_config": raw.get("expanded_config") or {},
        "expanded_devices": raw.get("expanded_devices") or {},
        "ipv4": ipv4_addresses(state.get("network") or {}),
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


def ipv4_addresses(network: dict) -> str:
    """The IPV4 column of `lxc list`: global addresses with their interface, loopback left
    out, e.g. '10.0.3.5 (eth0)'."""
    return ", ".join(
        f"{address['address']} ({name})"
        for name, nic in sorted(network.items())
        if name != "lo"
        for address in (nic or {}).get("addresses") or []
        if address.get("family") == "inet" and address.get("scope") == "global"
    )[:255]


def parse_time(value: str | None) -> dt.datetime | None:
    """LXD's timestamps; its zero times (0001-01-01, and 1970-01-01 for a container never
    started, in 5.0.2) mean 'never'."""
    if not value or value.startswith(("0001-01-01", "1970-01-01T00:00:00")):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def instance_logs(
    target: Target, name: str, max_bytes: int, keep_end: bool = False
) -> list[tuple[str, str, bool]]:
    """Every log file LXD keeps for the instance (lxc.log, CRIU dump/restore logs):
    (file name, text, truncated). Each is capped while it is read: its first `max_bytes`,
    or with `keep_end` its last (CRIU's errors come last), never more in memory."""
    client = reused_client(target)
    logs = []
    for path in _get(client, f"/instances/{name}/logs"):
        filename = path.rstrip("/").split("/")[-1]
        response = _raw_get(client, f"/instances/{name}/logs/{filename}", is_api=False, stream=True)
        with response:
            data, cut = _capped_body(response, max_bytes, keep_end, target.endpoint)
        logs.append((filename, data.decode(errors="replace"), cut))
    return logs


LOG_READ_SECONDS = 60.0  # one log file, however slowly LXD sends it


def _capped_body(response, max_bytes: int, keep_end: bool, endpoint: str) -> tuple[bytes, bool]:
    kept, cut = bytearray(), False
    deadline = time.monotonic() + LOG_READ_SECONDS
    try:
        for chunk in response.iter_content(64 * 1024):
            kept += chunk
            if len(kept) > max_bytes:
                cut = True
                if not keep_end:
                    return bytes(kept[:max_bytes]), True  # the rest is never read
                del kept[: len(kept) - max_bytes]
            if time.monotonic() > deadline:
                return bytes(kept), True
    except Exception as error:
        raise lxd_error(error, endpoint) from error
    return bytes(kept), cut


def instance_summary(target: Target, name: str) -> dict | None:
    """Status, saved-state flag and snapshots of one instance, or None when it does not exist."""
    client = reused_client(target)
    try:
        # Not recursion=1: that also collects live state (cgroups, network), about 60 ms.
        raw = _get(client, f"/instances/{name}", timeout=POLL_TIMEOUT)
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        forget_client(target)
        raise
    try:
        snapshots = _get(client, f"/instances/{name}/snapshots", 1, timeout=POLL_TIMEOUT)
    except LXDError:
        forget_client(target)
        raise
    return normalise_instance({**raw, "snapshots": snapshots, "state": None})


def instance_inventory(target: Target, name: str) -> dict | None:
    """One instance as `host_inventory` reports each (state, snapshots), None when it is gone:
    what an event about it changed, at the cost of one request."""
    client = reused_client(target)
    try:
        raw = _get(client, f"/instances/{name}", recursion=1)
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        forget_client(target)
        raise
    return normalise_instance(raw)


def instance_with_snapshot(target: Target, name: str, snapshot: str) -> dict | None:
    """Like instance_summary, with only the one snapshot (when it exists): verifying a new
    snapshot this way costs the same whatever the number of the instance's snapshots (the
    list with recursion=1 grew by a few milliseconds with each stateful one)."""
    client = reused_client(target)
    try:
        raw = _get(client, f"/instances/{name}")
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        forget_client(target)
        raise
    try:
        found = [_get(client, f"/instances/{name}/snapshots/{snapshot}")]
    except LXDError as error:
        if "not found" not in str(error).lower():
            forget_client(target)
            raise
        found = []
    return normalise_instance({**raw, "snapshots": found, "state": None})


def instance_definition(target: Target, name: str) -> dict:
    """The instance as LXD stores it (own config and devices, not expanded), to recreate it."""
    client = reused_client(target)
    try:
        return _get(client, f"/instances/{name}", timeout=POLL_TIMEOUT)
    except LXDError as error:
        if "not found" not in str(error).lower():  # a 404 is an answer: keep the connection
            forget_client(target)
        raise


def set_instance_config(target: Target, name: str, changes: dict[str, str]) -> None:
    """Set these keys in the instance's own config, leaving the others (PATCH merges);
    LXD and Incus apply it at once, to a running instance too."""
    client = reused_client(target)
    try:
        client.api.instances[name].patch(json={"config": changes})
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error


def instance_state(target: Target, name: str) -> dict:
    """The live state: status, init's PID and the process count (`lxc info`'s Pid and
    Processes). A container whose restore failed may still be reported Running; its PID and
    processes say whether anything runs."""
    client = reused_client(target)
    try:
        state = _get(client, f"/instances/{name}/state")
    except LXDError:
        forget_client(target)
        raise
    return {
        "status": state.get("status", ""),
        "pid": state.get("pid") or 0,
        "processes": state.get("processes") or 0,
    }


def instance_status(target: Target, name: str) -> str | None:
    """Running / Frozen / Stopped..., or None when there is no such instance. Cheap: no
    live state is collected, so it can be sampled several times a second."""
    try:
        return instance_definition(target, name)["status"]
    except LXDError as error:
        if "not found" in str(error).lower():
            return None
        raise


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
