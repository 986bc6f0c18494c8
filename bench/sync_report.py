"""bench/sync.py: the summary table's rows, what grows with the container count, and the
SQL statements of a sync by kind. Not run on its own."""

from __future__ import annotations

from collections import Counter

import _common
from sync_runs import Phase


def summary_rows(phases: list[Phase]) -> list[tuple]:
    rows = []
    for phase in phases:
        timings = _common.milliseconds([run.seconds for run in phase.runs])
        lxd_ms = _common.milliseconds([sum(r.seconds for r in run.requests) for run in phase.runs])
        db_ms = _common.milliseconds([run.inventory_seconds for run in phase.runs])
        requests = sorted({len(run.requests) for run in phase.runs})
        queries = [len(run.queries) for run in phase.runs]
        received = max(sum(r.size for r in run.requests) for run in phase.runs) / 1024
        rows.append(
            (
                phase.label, phase.transport, len(phase.runs), f"{phase.rows} ({phase.bench_rows})",
                f"{timings['median']:.0f}", f"{timings['min']:.0f}", f"{timings['max']:.0f}",
                "/".join(map(str, requests)), f"{lxd_ms['median']:.0f}", f"{received:.0f}",
                f"{db_ms['median']:.0f}", f"{queries[0]}, then {max(queries[1:], default=0)}",
            )
        )  # fmt: skip
    return rows


def growth(phases: list[Phase]) -> list[str]:
    """One sentence per transport: what grows from the smallest to the largest stopped set."""
    sentences = []
    for transport in dict.fromkeys(phase.transport for phase in phases):
        stopped = [p for p in phases if p.transport == transport and p.running == 0]
        if len(stopped) < 2 or stopped[0].containers == stopped[-1].containers:
            continue
        small, large = stopped[0], stopped[-1]

        def figures(phase: Phase) -> tuple[int, int, float, float]:
            last = phase.runs[-1]
            inventory = _common.milliseconds([run.inventory_seconds for run in phase.runs])
            lxd_ms = _common.milliseconds(
                [sum(r.seconds for r in run.requests) for run in phase.runs]
            )
            return len(last.requests), len(last.queries), lxd_ms["median"], inventory["median"]

        (r1, q1, l1, i1), (r2, q2, l2, i2) = figures(small), figures(large)
        per_container = (i2 - i1) / (large.containers - small.containers)
        sentences.append(
            f"{transport}, {small.containers} -> {large.containers} containers: LXD requests "
            f"per sync {r1} -> {r2}; SQL queries per steady sync {q1} -> {q2}; time in LXD "
            f"{l1:.0f} -> {l2:.0f} ms; record_inventory {i1:.0f} -> {i2:.0f} ms "
            f"(+{per_container:.2f} ms per container)"
        )
    return sentences


def query_kinds(sql: list[str]) -> str:
    """'UPDATE panel_instance: 4, ...' for one sync's statements."""
    kinds = Counter()
    for statement in sql:
        words = statement.replace('"', "").split()
        verb = words[0].upper()
        table = ""
        for keyword in ("FROM", "INTO", "UPDATE"):
            if keyword in words[:-1] and (verb != "UPDATE" or keyword == "UPDATE"):
                table = words[words.index(keyword) + 1]
                break
        kinds[f"{verb} {table}".strip()] += 1
    return ", ".join(f"{kind}: {count}" for kind, count in kinds.items())
