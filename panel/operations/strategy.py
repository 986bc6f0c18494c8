"""Which migration strategy to use by default, and why.

For a RUNNING container it is the strategy with the lower expected downtime, learned per host
pair and pool pair: every migration records its downtime and the drivers of the pools it
moved between, and the median of those measured for the same (source host, target host,
source driver, target driver, strategy) is the estimate. Before anything is measured, the
estimate is the prior the drivers give (panel/operations/storage.py): on two btrfs or two
ZFS pools a live migration skips LXD's final filesystem sync, and beats
checkpoint-move-restore; on any other pair it waits out LXD's timeouts and does not. When
only one strategy was measured for a key, the other's prior is scaled by how that one
compares with its own prior (a busy host pair, a big container), so that a measurement is
never weighed against a prior for a quieter machine; LXD's fixed wait is not scaled.
"""

from __future__ import annotations

import statistics
from typing import cast

from panel.models import Host, Instance, Operation
from panel.operations.storage import (
    NATIVE,
    UNKNOWN,
    PoolPair,
    expected_downtime,
    final_sync_wait,
    pool_pair,
)

LABELS = {
    "live": "live migration",
    "stateful_move": "checkpoint, move, restore",
    "cold": "stop, move, start",
    "stopped": "move (stopped)",
}
CRIU_STRATEGIES = ("live", "stateful_move")
HISTORY = 50  # the most recent measurements of a key that count


def pools_for(instance: Instance, target: Host, chosen_pool: str) -> PoolPair:
    """The pool pair as the hosts' last sync saw it (the request side never asks LXD)."""
    container = {"expanded_devices": instance.expanded_devices}
    return pool_pair(instance.host.facts, target.facts, container, chosen_pool)


def measured_downtimes(
    source: Host, target: Host, pools: PoolPair | None
) -> dict[str, list[float]]:
    """The newest downtimes per strategy between the two hosts, on the same pool drivers
    (`pools`), or on any (None)."""
    migrations = Operation.objects.filter(
        kind=Operation.Kind.MIGRATE, status=Operation.Status.SUCCEEDED,
        source_host=source, target_host=target, downtime_seconds__isnull=False,
    )  # fmt: skip
    if pools is not None:
        migrations = migrations.filter(
            result__pools__source_driver=pools.source_driver,
            result__pools__target_driver=pools.target_driver,
        )
    rows = migrations.order_by("-finished_at").values_list("result__strategy", "downtime_seconds")
    downtimes: dict[str, list[float]] = {}
    for strategy, seconds in rows[: HISTORY * 4]:
        # downtime_seconds__isnull=False above: never None here.
        found = downtimes.setdefault(strategy, [])
        if len(found) < HISTORY:
            found.append(cast(float, seconds))
    return downtimes


def recommend(
    source: Host,
    target: Host,
    running: bool,
    criu_possible: bool,
    pools: PoolPair | None = None,
    why_not_criu: str = "",
) -> tuple[str, str]:
    if not running:
        return "stopped", "The container is stopped: it moves as it is."
    if not criu_possible:
        return "cold", why_not_criu or (
            "One of the hosts cannot checkpoint containers, so it is stopped and restarted."
        )
    pools = pools or PoolPair("", "", "", "")
    measured = measured_downtimes(source, target, pools)
    priors = {s: expected_downtime(s, pools, source.facts) for s in CRIU_STRATEGIES}
    scale = measured_scale(measured, priors)
    estimates = {}
    for strategy in CRIU_STRATEGIES:
        if measured.get(strategy):
            estimates[strategy] = statistics.median(measured[strategy])
        else:
            work, wait = priors[strategy]
            estimates[strategy] = work * scale + wait
    best = min(CRIU_STRATEGIES, key=estimates.__getitem__)  # a tie: live, the one LXD offers
    detail = "; ".join(
        estimate_words(s, estimates[s], measured.get(s), pools, source, scale)
        for s in CRIU_STRATEGIES
    )
    where = (
        f"From {source.name} (pool {pools.source_pool or '?'!r}, "
        f"{pools.source_driver or 'driver unknown'}) to {target.name} "
        f"(pool {pools.target_pool or '?'!r}, {pools.target_driver or 'driver unknown'})"
    )
    return best, f"{where}, expected downtime: {detail}. Using {LABELS[best]}, the lower."


def measured_scale(measured: dict[str, list[float]], priors: dict[str, tuple]) -> float:
    """How this key's measured downtimes compare with their priors' own work (1: as the
    lab measured them); the median over the strategies measured, never below a tenth."""
    ratios = []
    for strategy, (work, wait) in priors.items():
        if measured.get(strategy):
            ratios.append(max(statistics.median(measured[strategy]) - wait, 0.0) / work)
    return max(statistics.median(ratios), 0.1) if ratios else 1.0


def estimate_words(
    strategy: str,
    seconds: float,
    measured: list[float] | None,
    pools: PoolPair,
    source: Host,
    scale: float,
) -> str:
    label = LABELS[strategy]
    if measured:
        return f"{label} {seconds:.2f} s (median of {len(measured)} measured)"
    if strategy != "live":
        why = "a stateful stop, a stopped move and a restore, measured on any pool"
    elif pools.transfer == NATIVE:
        why = f"LXD sends {pools.source_driver} natively and skips its final filesystem sync"
    else:
        wait = final_sync_wait(source.facts, pools.source_driver)
        cause = (
            "the drivers are not known, so rsync is assumed"
            if pools.transfer == UNKNOWN
            else "different drivers: LXD falls back to rsync"
            if pools.source_driver != pools.target_driver
            else f"{pools.source_driver} is an rsync-type pool"
        )
        why = f"LXD's final rsync pass waits {wait:.0f} s while CRIU holds the container ({cause})"
    scaled = f"; {scale:.1f} times the lab's figure, as this pair measured" if scale != 1.0 else ""
    return f"{label} about {seconds:.1f} s (not measured yet for these pools: {why}{scaled})"
