"""What a host can do with CRIU, derived from what LXD or Incus (and the host's agent)
reported.

Pure functions over the facts dictionary stored on Host, so the rules are testable alone.
Every answer carries its reason: an admin must know *why* before clicking. What differs
between LXD and Incus comes from the platform table (panel/lxd/platforms.py): LXD 6.6
removed container CRIU (stateful snapshot, stateful stop and live migration answer HTTP 400;
5.0 and 5.21 keep it), Incus keeps it but gates it behind `migration.stateful`, and Incus's
idmapped root filesystems cannot be restored by CRIU.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from panel.lxd.platforms import checkpoint_config, platform_of

YES, NO, UNKNOWN = "yes", "no", "unknown"

# What CRIU's restore says about an idmapped root filesystem (LAB.md section 9), and how
# an Incus host stops using them for containers.
IDMAPPED_ROOTFS = (
    "{server} uses idmapped mounts for container root filesystems here (GET /1.0 reports "
    "kernel_features.idmapped_mounts: true), and CRIU cannot restore such a container: the "
    "restore fails with `Can't open fake fifo ... Permission denied`, and the container is "
    "left STOPPED. Set INCUS_IDMAPPED_MOUNTS_DISABLE=1 in incusd's environment "
    "(/etc/default/incus) and restart incusd: each container's files are then shifted on "
    "disk at its next start, as LXD 5.0 does, and CRIU restores them."
)


@dataclass(frozen=True)
class Capability:
    """One thing a host can or cannot do, and why."""

    key: str
    label: str
    state: str
    reason: str

    @property
    def allowed(self) -> bool:
        """Offer the action unless we know it cannot work; unknown is offered with a warning."""
        return self.state != NO


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def idmapped_rootfs(facts: dict) -> bool:
    """The server gives containers idmapped root filesystems, which CRIU cannot restore."""
    platform = platform_of(facts)
    features = facts.get("kernel_features") or {}
    return platform.idmapped_rootfs_breaks_criu and features.get("idmapped_mounts") == "true"


def container_criu_support(facts: dict) -> tuple[str, str]:
    """Can this server checkpoint and restore containers at all?"""
    if not facts.get("server_version"):
        return UNKNOWN, "The host has not been contacted yet."
    platform, version = platform_of(facts), facts["server_version"]
    removed = platform.criu_removed_in
    if removed and version_tuple(version) >= removed:
        since = ".".join(map(str, removed))
        return NO, f"{platform.name} {version} removed CRIU support for containers (since {since})."
    if "lxc" not in facts.get("driver", "lxc"):
        return NO, "This server has no LXC driver, so no containers to checkpoint."
    if idmapped_rootfs(facts):
        return NO, IDMAPPED_ROOTFS.format(server=f"{platform.name} {version}")
    gate = checkpoint_config(platform, facts.get("api_extensions") or [])
    version = f"{version}{gate_note(gate)}"
    server = platform.name
    nested = facts.get("system_type") == "container"
    nested_note = (
        f" {server} reports that it runs inside a container; the checkpoint/restore announcement "
        "says CRIU does not work with nesting."
        if nested
        else ""
    )
    criu = facts.get("criu_check")
    if criu is not None and agent_silent(facts):
        return UNKNOWN, (
            f"{server} {version} supports it; CRIU not verified: no agent (the host's agent has "
            f"not answered since {facts['agent_answered_at'][:16].replace('T', ' ')} UTC)."
            f"{nested_note}"
        )
    if criu is None:
        return UNKNOWN, f"{server} {version} supports it; CRIU not verified: no agent.{nested_note}"
    if not criu.get("ok"):
        return NO, f"`criu check` on the host failed: {criu.get('output', '').strip()[:300]}"
    if nested:
        return YES, (
            f"{server} {version} supports it and `criu check` passes on the host, although "
            f"{server} reports running nested."
        )
    return YES, f"{server} {version} supports it and `criu check` passes on the host."


def gate_note(gate: dict[str, str]) -> str:
    """Incus 6.0.4 checkpoints a container only when its config allows it; the panel sets
    that itself before a container's first checkpoint (panel/operations/container.py)."""
    if not gate:
        return ""
    settings = ", ".join(f"{key}={value}" for key, value in gate.items())
    return (
        f" (with {settings} on the container, which it requires: the panel sets it before a "
        "container's first checkpoint)"
    )


def agent_silent(facts: dict, now: dt.datetime | None = None) -> bool:
    """The agent's facts are stale once it missed three probes in a row (beat asks every
    PANEL_AGENT_PROBE_MINUTES); facts without a reply time did not come from an agent."""
    from django.conf import settings

    answered = facts.get("agent_answered_at")
    if not answered:
        return False
    age = (now or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(answered)
    return age > dt.timedelta(minutes=3 * settings.AGENT_PROBE_MINUTES)


def host_capabilities(facts: dict, https: bool) -> list[Capability]:
    state, reason = container_criu_support(facts)
    migrate_state, migrate_reason = state, reason
    if not https and state != NO:
        migrate_state = NO
        migrate_reason = (
            "Reachable only through a local unix socket: another host cannot reach it. "
            "Add it by its HTTPS address to migrate."
        )
    return [
        Capability("stateful_snapshot", "Stateful snapshots", state, reason),
        Capability("stateful_stop", "Stateful stop", state, reason),
        Capability("live_migration", "Live migration", migrate_state, migrate_reason),
    ]
