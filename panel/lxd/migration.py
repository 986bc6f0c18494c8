"""Migration: the panel runs the flow itself (pylxd's migrate() deletes the source as soon as
the target's create call returns, before anything is verified)."""

from __future__ import annotations

from panel.lxd.connection import Target, reused_client
from panel.lxd.operations import _post_operation
from panel.lxd.platforms import LXD, Platform, translate_config


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
    `cluster_migration_inconsistent_copy`): see panel/operations/transfer.py for why a live
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
    definition: dict,
    new_name: str,
    live: bool,
    pool: str,
    source: dict,
    platforms: tuple[Platform, Platform] = (LXD, LXD),
) -> dict:
    """The target's create request: the source's own config (translated when the target is
    the other platform: panel/lxd/platforms.py), devices and profiles, the saved-state flag
    (so a checkpointed container restores when started), and the chosen storage pool for
    its root disk."""
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
        "config": translate_config(definition.get("config", {}), *platforms).config,
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
