"""Expected downtime, from what the panel measured before: every migration records its
downtime (panel/operations/downtime.py), every stateful stop and start its duration."""

from __future__ import annotations

import statistics

from panel.hosts.models import Host
from panel.operations.models import Operation
from panel.operations.storage import PoolPair
from panel.operations.strategy import LABELS, measured_downtimes

HISTORY = 50  # the newest measurements that count
RESTORED = "restored from its saved state"  # container.change_state's outcome of a restore


def migration_downtimes(
    source: Host, target: Host, pools: PoolPair | None = None
) -> dict[str, tuple[float | None, str]]:
    """Per strategy: the median downtime between these two hosts (on the same pool drivers
    when `pools` is given: btrfs and dir differ tenfold), else between any two hosts, else
    unknown; a stopped container is down either way (0 s)."""
    here = measured_downtimes(source, target, pools)
    expected: dict[str, tuple[float | None, str]] = {
        "stopped": (0.0, "it is stopped: it does not run anywhere either way")
    }
    for strategy in ("live", "stateful_move", "cold"):
        values = here.get(strategy)
        where = f"from {source.name} to {target.name}"
        if pools is not None and pools.source_driver:
            where += f" ({pools.source_driver} to {pools.target_driver or '?'} pools)"
        if not values:
            values, where = anywhere(strategy), "between other hosts"
        if values:
            expected[strategy] = (
                round(statistics.median(values), 2),
                f"median of {len(values)} {'migration' if len(values) == 1 else 'migrations'} "
                f"by {LABELS[strategy]} {where}",
            )
        else:
            expected[strategy] = (None, f"no {LABELS[strategy]} measured yet")
    return expected


def anywhere(strategy: str) -> list[float]:
    rows = Operation.objects.filter(
        kind=Operation.Kind.MIGRATE,
        status=Operation.Status.SUCCEEDED,
        downtime_seconds__isnull=False,
        result__strategy=strategy,
    ).order_by("-finished_at")
    return [
        seconds
        for seconds in rows.values_list("downtime_seconds", flat=True)[:HISTORY]
        if seconds is not None
    ]


def durations(host: Host, kind: str, outcome_contains: str = "") -> list[float]:
    rows = Operation.objects.filter(
        kind=kind,
        status=Operation.Status.SUCCEEDED,
        source_host=host,
        started_at__isnull=False,
        finished_at__isnull=False,
    )
    if outcome_contains:
        rows = rows.filter(outcome__contains=outcome_contains)
    pairs = rows.order_by("-finished_at").values_list("started_at", "finished_at")[:HISTORY]
    return [(end - start).total_seconds() for start, end in pairs if start and end]


def restore_seconds(host: Host) -> tuple[float | None, str]:
    """How long a start from saved state took on this host."""
    values = durations(host, Operation.Kind.START, RESTORED)
    if not values:
        return None, f"no restore measured on {host.name} yet"
    return round(statistics.median(values), 2), f"median of {len(values)} restore(s)"


def checkpoint_downtime(host: Host) -> tuple[float | None, str]:
    """A checkpoint in place keeps a container down from its stateful stop until bring back
    has restored it: the two measured steps, plus however long the host is away."""
    stops = durations(host, Operation.Kind.STATEFUL_STOP)
    restore, _ = restore_seconds(host)
    if not stops or restore is None:
        return None, (
            f"not measured on {host.name} yet: the checkpoint and the restore, plus however "
            "long the host is down"
        )
    stop = statistics.median(stops)
    return round(stop + restore, 2), (
        f"checkpoint {stop:.2f} s (median of {len(stops)}) + restore {restore:.2f} s, plus "
        "however long the host is down"
    )
