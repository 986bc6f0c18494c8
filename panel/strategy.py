"""Which migration strategy to use by default for a host pair, and why.

Every migration records its downtime. For a RUNNING container the default is the strategy
with the lower median downtime measured between the same two hosts; until both have been
measured, it is checkpoint-move-restore, for the reason given below.
"""

from __future__ import annotations

import statistics

from panel.models import Host, Operation

LABELS = {
    "live": "live migration",
    "stateful_move": "checkpoint, move, restore",
    "cold": "stop, move, start",
    "stopped": "move (stopped)",
}
UNMEASURED_REASON = (
    "No migration has been measured between these hosts for both strategies yet, so the "
    "default is checkpoint-move-restore: with LXD 5.0 a live migration keeps the container "
    "frozen while LXD's post-dump script waits (about 10.5 s in the lab), while a stateful "
    "stop, move and start kept it down about 2 s. Each migration you run is measured."
)


def measured_downtimes(source: Host, target: Host) -> dict[str, list[float]]:
    rows = Operation.objects.filter(
        kind=Operation.Kind.MIGRATE, status=Operation.Status.SUCCEEDED,
        source_host=source, target_host=target, downtime_seconds__isnull=False,
    ).order_by("-finished_at").values_list("result__strategy", "downtime_seconds")[:50]  # fmt: skip
    downtimes: dict[str, list[float]] = {}
    for strategy, seconds in rows:
        downtimes.setdefault(strategy, []).append(seconds)
    return downtimes


def recommend(source: Host, target: Host, running: bool, criu_possible: bool) -> tuple[str, str]:
    if not running:
        return "stopped", "The container is stopped: it moves as it is."
    if not criu_possible:
        return (
            "cold",
            "One of the hosts cannot checkpoint containers, so it is stopped and restarted.",
        )
    downtimes = measured_downtimes(source, target)
    medians = {
        s: statistics.median(v) for s, v in downtimes.items() if s in ("live", "stateful_move")
    }
    if len(medians) < 2:
        return "stateful_move", UNMEASURED_REASON
    best = min(medians, key=medians.get)
    detail = ", ".join(
        f"{LABELS[s]} {medians[s]:.2f} s (median of {len(downtimes[s])})" for s in sorted(medians)
    )
    return (
        best,
        f"Measured downtime from {source.name} to {target.name}: {detail}. Using the lower.",
    )
