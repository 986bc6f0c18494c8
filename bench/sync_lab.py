"""bench/sync.py: lab host1 through lab.py and the `lxc` CLI, and this benchmark's own
containers on it. Not run on its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import _common

LAB_HOST = "host1"
# Only names of this exact shape are ever deleted: other people's containers on the lab
# (even ones called bench-something) are left alone.
PREFIX = "bench-sync-"
OURS = re.compile(r"bench-sync-\d{3}")


def lab_host(name: str) -> dict:
    status = subprocess.run(
        ["python3", str(_common.ROOT / "lab" / "lab.py"), "status", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lab = json.loads(status.stdout)
    host = next((host for host in lab["hosts"] if host["name"] == name), None)
    if host is None or not host.get("lxd_answering"):
        raise SystemExit(f"The lab's {name} is not answering: run `python3 lab/lab.py up` first.")
    return {**host, "image_alias": lab["image_alias"]}


def lxc(host: dict, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["lxc", *args],
        env={**os.environ, "LXD_DIR": host["lxd_dir"]},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"lxc {' '.join(args[:3])}... on {host['name']}: {result.stderr.strip()}"
        )
    return result.stdout


def bench_containers(host: dict) -> list[str]:
    """This benchmark's containers on the host (by their exact name shape)."""
    names = lxc(host, "list", "--format", "csv", "--columns", "n").split()
    return sorted(name for name in names if OURS.fullmatch(name))


def delete_containers(host: dict, names: list[str]) -> float:
    started = time.perf_counter()
    for chunk in range(0, len(names), 50):
        lxc(host, "delete", "--force", *names[chunk : chunk + 50])
    return time.perf_counter() - started
