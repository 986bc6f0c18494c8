"""Migration pre-flight checks: pure rules over what both hosts reported.

The checkpoint/restore announcement: a migration target must implement at least the source's
CPU instruction set, offer at least the same syscalls (kernel), and be able to mount every
filesystem the source mounted. Plus what LXD itself needs: a free name, and the storage pool,
profiles and networks the container uses. Each check says pass, fail, warn or unknown, why,
and which strategies a failure blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from panel.hosts.capabilities import NO, YES, container_criu_support, version_tuple
from panel.lxd.platforms import Platform, platform_of, translate_config
from panel.operations.storage import pool_pair, root_pool, storage_verdict

PASS, FAIL, WARN, UNKNOWN = "pass", "fail", "warn", "unknown"
LIVE_STRATEGIES = ["live", "stateful_move"]  # both need CRIU on both sides
ALL_STRATEGIES = ["live", "stateful_move", "cold", "stopped"]


@dataclass
class Check:
    """One pre-flight check and its verdict."""

    key: str
    label: str
    status: str
    reason: str
    blocks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Side:
    """What the checks need to know about one host, gathered live by the worker."""

    name: str
    reachable: bool
    trusted: bool
    error: str
    facts: dict


def run_checks(
    source: Side,
    target: Side,
    container: dict,
    target_pool: str,
    new_name: str,
    name_taken: bool,
) -> list[Check]:
    checks = [reach(source, "source"), reach(target, "target")]
    if not (source.reachable and source.trusted and target.reachable and target.trusted):
        return checks
    checks += [
        Check(
            "target_reaches_source",
            "The target can reach the source",
            UNKNOWN,
            "Tested by the migration itself: pull mode first, push mode if the target cannot "
            "connect to the source.",
        ),
        open_for_work(target),
        criu_check(source, "source"),
        criu_check(target, "target"),
        architecture(container, target),
        kernel(source, target),
        cpu_flags(source, target),
        name_free(target, new_name, name_taken),
        storage_pool(container, target, target_pool),
        profiles(container, target),
        networks(container, target),
        incremental_memory(source, target),
        storage_transfer(source, target, container, target_pool),
        *platform_checks(source, target, container),
    ]
    return checks


def blocked(checks: list[Check], strategy: str) -> list[Check]:
    return [check for check in checks if check.status == FAIL and strategy in check.blocks]


def reach(side: Side, role: str) -> Check:
    label = f"The {role} ({side.name}) answers and trusts the panel"
    if not side.reachable:
        return Check(f"{role}_reachable", label, FAIL, side.error, ALL_STRATEGIES)
    if not side.trusted:
        return Check(
            f"{role}_reachable",
            label,
            FAIL,
            f"{side.name} answers but does not trust the panel: add it again.",
            ALL_STRATEGIES,
        )
    server = f"{platform_of(side.facts).name} {side.facts.get('server_version', '?')}"
    return Check(f"{role}_reachable", label, PASS, server)


def open_for_work(target: Side) -> Check:
    """A host in maintenance (or being emptied) takes no new containers."""
    closed = target.facts.get("maintenance", "")
    label = f"{target.name} is not in maintenance"
    if closed:
        return Check("maintenance", label, FAIL, closed, ALL_STRATEGIES)
    return Check("maintenance", label, PASS, "")


def criu_check(side: Side, role: str) -> Check:
    state, reason = container_criu_support(side.facts)
    status = {YES: PASS, NO: FAIL}.get(state, UNKNOWN)
    return Check(
        f"{role}_criu",
        f"Container checkpoint/restore on the {role} ({side.name})",
        status,
        reason,
        LIVE_STRATEGIES,
    )


def architecture(container: dict, target: Side) -> Check:
    wanted = container.get("architecture", "")
    offered = target.facts.get("architectures", [])
    if wanted in offered:
        return Check("architecture", "Same architecture", PASS, f"{wanted} on both")
    return Check(
        "architecture",
        "Same architecture",
        FAIL,
        f"The container is {wanted}; {target.name} runs {', '.join(offered) or '?'}.",
        ALL_STRATEGIES,
    )


def kernel(source: Side, target: Side) -> Check:
    ours, theirs = source.facts.get("kernel_version", ""), target.facts.get("kernel_version", "")
    label = "Target kernel not older than the source's (same syscalls)"
    if not ours or not theirs:
        return Check("kernel", label, UNKNOWN, "A kernel version was not reported.")
    if version_tuple(theirs) >= version_tuple(ours):
        return Check("kernel", label, PASS, f"{theirs} >= {ours}")
    return Check(
        "kernel",
        label,
        FAIL,
        f"{target.name} runs {theirs}, older than {ours}: restored programs may call "
        "syscalls it lacks. Migrate cold, or upgrade the target's kernel.",
        LIVE_STRATEGIES,
    )


def cpu_flags(source: Side, target: Side) -> Check:
    label = "Target CPU offers every instruction set extension of the source"
    ours, theirs = source.facts.get("cpu_flags"), target.facts.get("cpu_flags")
    if ours is None or theirs is None:
        missing = [side.name for side, flags in ((source, ours), (target, theirs)) if flags is None]
        return Check(
            "cpu_flags",
            label,
            UNKNOWN,
            f"No CPU flags known for {', '.join(missing)}: LXD 5.0 does not report "
            "them and no agent answered. A restored program using a missing "
            "instruction would crash.",
        )
    lacking = sorted(set(ours) - set(theirs))
    if not lacking:
        return Check("cpu_flags", label, PASS, f"all {len(ours)} source flags present")
    return Check(
        "cpu_flags",
        label,
        FAIL,
        f"{target.name} lacks {', '.join(lacking[:12])}"
        + (f" and {len(lacking) - 12} more" if len(lacking) > 12 else "")
        + ". Migrate cold (processes restart on the new CPU).",
        LIVE_STRATEGIES,
    )


def name_free(target: Side, new_name: str, taken: bool) -> Check:
    label = f"The name {new_name!r} is free on {target.name}"
    if taken:
        return Check(
            "name_free",
            label,
            FAIL,
            f"{target.name} already has an instance named {new_name!r}: choose a new "
            "name or remove it there.",
            ALL_STRATEGIES,
        )
    return Check("name_free", label, PASS, "")


def storage_pool(container: dict, target: Side, chosen: str) -> Check:
    pool = chosen or root_pool(container)
    pools = target.facts.get("storage_pools", [])
    label = f"Storage pool {pool!r} exists on {target.name}"
    if not pool or pool in pools:
        return Check("storage_pool", label, PASS, "")
    return Check(
        "storage_pool",
        label,
        FAIL,
        f"{target.name} has pools {', '.join(pools) or 'none'}: choose one of them.",
        ALL_STRATEGIES,
    )


def profiles(container: dict, target: Side) -> Check:
    missing = sorted(set(container.get("profiles", [])) - set(target.facts.get("profiles", [])))
    label = "The container's profiles exist on the target"
    if not missing:
        return Check("profiles", label, PASS, ", ".join(container.get("profiles", [])))
    return Check(
        "profiles",
        label,
        FAIL,
        f"Missing on {target.name}: {', '.join(missing)}. Create them there first.",
        ALL_STRATEGIES,
    )


def networks(container: dict, target: Side) -> Check:
    used = sorted(
        {
            d.get("network") or d.get("parent")
            for d in container.get("expanded_devices", {}).values()
            if d.get("type") == "nic" and (d.get("network") or d.get("parent"))
        }
    )
    missing = sorted(set(used) - set(target.facts.get("networks", [])))
    label = "The container's networks exist on the target"
    if not missing:
        return Check("networks", label, PASS, ", ".join(used) or "the container has no NIC")
    return Check(
        "networks", label, FAIL, f"Missing on {target.name}: {', '.join(missing)}.", ALL_STRATEGIES
    )


def incremental_memory(source: Side, target: Side) -> Check:
    """LXD's iterative pre-copy needs the kernel's memory dirty tracking on both sides."""
    label = "Incremental memory pre-copy (migration.incremental.memory)"
    given = [side.facts.get("mem_dirty_track") for side in (source, target)]
    answers = [answer for answer in given if answer is not None]
    if len(answers) < len(given):
        return Check(
            "incremental_memory",
            label,
            UNKNOWN,
            "Not offered: dirty tracking is checked by `criu check --feature "
            "mem_dirty_track` through the hosts' agents, and one did not answer.",
        )
    if all(answer.get("ok") for answer in answers):
        return Check("incremental_memory", label, PASS, "Both kernels track dirty memory.")
    return Check(
        "incremental_memory",
        label,
        WARN,
        "Not offered: CRIU says dirty tracking is off on "
        + ", ".join(
            s.name for s, a in zip((source, target), answers, strict=True) if not a.get("ok")
        )
        + " (LXD would silently do one final dump instead).",
    )


def storage_transfer(source: Side, target: Side, container: dict, chosen: str) -> Check:
    """Each side's pool driver, and what it costs a live migration (panel/operations/storage.py).
    Advisory: it blocks nothing, and the recommendation weighs it."""
    pools = pool_pair(source.facts, target.facts, container, chosen)
    status, reason = storage_verdict(pools, source.facts, source.name, target.name)
    return Check("storage_transfer", "How LXD moves the filesystem (storage pool drivers)",
                 status, reason)  # fmt: skip


def criu_between(source: Platform, target: Platform) -> str:
    """Why no CRIU strategy moves a running container from `source` to `target`, or ''.
    Tried on the lab both ways (docs/platforms.md): CRIU's image holds the mounts the source
    platform gives every container, and the other platform's restore cannot recreate them;
    once, both servers reported success while the running state was lost."""
    if source is target:
        return ""
    return (
        f"A CRIU checkpoint made by {source.name} holds {source.name}'s own mounts "
        f"({', '.join(source.own_mounts)}), which {target.name} does not recreate: on the lab "
        f"its restore failed in CRIU's mount step ('{source.foreign_restore_error}'), and "
        "once both servers reported success while the running state was lost. A running container "
        f"is therefore stopped, moved and started on {target.name}: its processes restart."
    )


def platform_checks(source: Side, target: Side, container: dict) -> list[Check]:
    """Between LXD and Incus: no CRIU strategy, and the config the target will get."""
    ours, theirs = platform_of(source.facts), platform_of(target.facts)
    label = f"{ours.name} to {theirs.name}"
    if ours is theirs:
        return [Check("platforms", label, PASS, f"Both run {ours.name}: nothing to translate.")]
    checks = [Check("platforms", label, FAIL, criu_between(ours, theirs), LIVE_STRATEGIES)]
    translation = translate_config(container.get("config") or {}, ours, theirs)
    reason = f"Config: {translation.summary(ours, theirs)}."
    reason += (
        " The container moves as a backup with its snapshots (exported, translated, imported; "
        "its data passes through the panel's worker). Stateful snapshots arrive as "
        f"filesystem snapshots: their CRIU images hold {ours.name}'s mounts."
    )
    if container.get("stateful"):
        reason += " Its saved state is discarded: it starts afresh."
    status = WARN if translation.dropped or container.get("stateful") else PASS
    checks.append(Check("config_translation", f"Config for {theirs.name}", status, reason))
    return checks
