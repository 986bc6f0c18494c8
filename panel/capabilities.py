"""What a host can do with CRIU, derived from what LXD (and the host's agent) reported.

Pure functions over the facts dictionary stored on Host, so the rules are testable alone.
Every answer carries its reason: an admin must know *why* before clicking.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

YES, NO, UNKNOWN = "yes", "no", "unknown"

# LXD 6.6 removed CRIU support for containers (stateful snapshot, stateful stop and live
# migration answer HTTP 400); 5.0 and 5.21 keep it.
LXD_WITHOUT_CONTAINER_CRIU = (6, 6)


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


def container_criu_support(facts: dict) -> tuple[str, str]:
    """Can this server checkpoint and restore containers at all?"""
    if not facts:
        return UNKNOWN, "The host has not been contacted yet."
    server, version = facts.get("server", "lxd"), facts.get("server_version", "")
    if server == "incus":
        return UNKNOWN, "Incus documents container checkpoint/restore as limited."
    if version and version_tuple(version) >= LXD_WITHOUT_CONTAINER_CRIU:
        return NO, f"LXD {version} removed CRIU support for containers (since 6.6)."
    if "lxc" not in facts.get("driver", "lxc"):
        return NO, "This server has no LXC driver, so no containers to checkpoint."
    nested = facts.get("system_type") == "container"
    nested_note = (
        " LXD reports that it runs inside a container; the checkpoint/restore announcement "
        "says CRIU does not work with nesting."
        if nested
        else ""
    )
    criu = facts.get("criu_check")
    if criu is not None and agent_silent(facts):
        return UNKNOWN, (
            f"LXD {version} supports it; CRIU not verified: no agent (the host's agent has not "
            f"answered since {facts['agent_answered_at'][:16].replace('T', ' ')} UTC).{nested_note}"
        )
    if criu is None:
        return UNKNOWN, f"LXD {version} supports it; CRIU not verified: no agent.{nested_note}"
    if not criu.get("ok"):
        return NO, f"`criu check` on the host failed: {criu.get('output', '').strip()[:300]}"
    if nested:
        return YES, "`criu check` passes on the host, although LXD reports running nested."
    return YES, f"LXD {version} supports it and `criu check` passes on the host."


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
