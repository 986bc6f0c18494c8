"""Where LXD's own time goes in `lxc snapshot --stateful`, no panel involved: each snapshot
split into LXD before CRIU, CRIU's dump, and LXD after CRIU, with CRIU's freeze retries.

Run (lab up, as root):  .venv/bin/python bench/snapshot_lxd_parts.py [--snapshots 30]

CRIU's dump log gives the dump's length (its last line's relative time) and whether freezing
the container's cgroup took a retry ("freezing processes: N attempts done", each attempt
100 ms); the log file's modification time is when CRIU finished. The clock around the CLI
gives the rest. The lab keeps LXD's logs beside its LXD_DIR (hosts/<host>/log).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from pathlib import Path

from _common import lab_state, lxc, print_machine, print_table

ATTEMPTS = re.compile(r"freezing processes: (\d+) attempts done")
RELATIVE_TIME = re.compile(r"^\((\d+\.\d+)\)", re.MULTILINE)


def one_snapshot(lab_host: dict, container: str, name: str, logs: Path) -> dict:
    before = set(logs.glob("snapshot_dump_*.log"))
    started = time.time()
    lxc(lab_host, "snapshot", container, name, "--stateful")
    ended = time.time()
    new = sorted(set(logs.glob("snapshot_dump_*.log")) - before, key=lambda p: p.stat().st_mtime)
    if not new:  # LXD names the log by the second: a second snapshot in it reuses the name
        new = [max(logs.glob("snapshot_dump_*.log"), key=lambda p: p.stat().st_mtime)]
    log = new[-1]
    text = log.read_text(errors="replace")
    dump = float(RELATIVE_TIME.findall(text)[-1])
    criu_ended = log.stat().st_mtime
    retries = ATTEMPTS.search(text)
    return {
        "total": ended - started,
        "before CRIU": criu_ended - dump - started,
        "CRIU dump": dump,
        "after CRIU": ended - criu_ended,
        "freeze retries": int(retries.group(1)) if retries else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=30)
    args = parser.parse_args()
    lab = lab_state(hosts=1)
    lab_host = lab["hosts"][0]
    logs_root = Path(lab_host["lxd_dir"]).parent / "log"
    container = f"bench-parts-{uuid.uuid4().hex[:6]}"
    try:
        lxc(lab_host, "launch", lab["image_alias"], container)
        time.sleep(3)
        lxc(lab_host, "snapshot", container, "warmup", "--stateful")
        runs = [
            one_snapshot(lab_host, container, f"s{number}", logs_root / container)
            for number in range(args.snapshots)
        ]
    finally:
        lxc(lab_host, "delete", "--force", container, check=False)
    report(runs)


def report(runs: list[dict]) -> None:
    print_machine()
    slow = [run for run in runs if run["total"] > 1.0]
    groups = [("all", runs), ("over 1 s", slow), ("the rest", [r for r in runs if r not in slow])]
    parts = ["total", "before CRIU", "CRIU dump", "after CRIU"]
    rows = []
    for label, group in groups:
        if not group:
            continue
        medians = [f"{statistics.median(run[part] for run in group) * 1000:.0f}" for part in parts]
        retried = sum(run["freeze retries"] > 0 for run in group)
        rows.append([label, len(group), *medians, retried])
    print_table(["snapshots", "count", *(f"{part} ms" for part in parts), "freeze retried"], rows)


if __name__ == "__main__":
    main()
