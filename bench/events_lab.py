"""Benchmark: how soon a change made by hand with `lxc` reaches the panel's rows, through
`manage.py watch_events` (one /1.0/events subscription per host).

    python3 lab/lab.py up                         # the lab must be up (as root)
    .venv/bin/python bench/events_lab.py [--rounds 10]

Registers lab host1 in a throwaway database (trusted over HTTPS with the panel's own calls),
starts the watcher as bin/panel does, then, each round, `lxc launch`es a counter container,
stops it, snapshots it and deletes it, timing from each `lxc` command's return to the row's
change (polled every 10 ms). Side by side: the same change without the watcher, waiting for
Celery beat's full sync every PANEL_HOST_SYNC_MINUTES (a change lands at a uniformly random
point of that interval; computed, not measured), and one full sync's own duration, measured.
Deletes its containers (names `bench-ev-NNN` only) and untrusts its certificate at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

ACTIONS = ("launch", "stop", "snapshot", "delete")


def lxc(host: dict, *args: str) -> None:
    subprocess.run(["lxc", *args], env={**os.environ, "LXD_DIR": host["lxd_dir"]},
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def until(condition, limit: float = 30.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise SystemExit(f"no change in the panel after {limit:.0f} s")
        time.sleep(0.01)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    lab = _common.lab_state(1)
    folder = _common.isolate("events")
    from django.conf import settings

    from panel import lxd
    from panel.hosts.inventory import sync
    from panel.models import Host, Instance, Snapshot

    lab_host = lab["hosts"][0]
    cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    pem = (Path(lab_host["lxd_dir"]) / "server.crt").read_text()
    lxd.trust(lxd.Target(lab_host["url"], pem, cert), lab_host["trust_password"])
    host = Host.objects.create(name=lab_host["name"], endpoint=lab_host["url"],
                               server_certificate=pem)  # fmt: skip
    started = time.monotonic()
    sync(host)
    full_sync = time.monotonic() - started
    log = folder / "events.log"
    watcher = subprocess.Popen([sys.executable, "manage.py", "watch_events"], cwd=_common.ROOT,
                               env=os.environ.copy(), stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    delays: dict[str, list[float]] = {action: [] for action in ACTIONS}
    names = [f"bench-ev-{n:03d}" for n in range(args.rounds)]
    try:
        until(lambda: "following" in log.read_text(), limit=60)
        rows = Instance.objects.filter(host=host)
        for name in names:
            _common.progress(name)
            mine = rows.filter(name=name)
            lxc(lab_host, "launch", lab["image_alias"], name)
            delays["launch"].append(until(mine.filter(status="Running", gone_at=None).exists))
            lxc(lab_host, "stop", "--force", name)
            delays["stop"].append(until(mine.filter(status="Stopped").exists))
            lxc(lab_host, "snapshot", name, "by-hand")
            snapshot = Snapshot.objects.filter(instance__in=mine, name="by-hand")
            delays["snapshot"].append(until(snapshot.exists))
            lxc(lab_host, "delete", name)
            delays["delete"].append(until(mine.filter(gone_at__isnull=False).exists))
    finally:
        _common.stop([watcher])
        for name in names:
            subprocess.run(["lxc", "delete", "--force", name], capture_output=True,
                           env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]})  # fmt: skip
        fingerprint = lxd.certificate_fingerprint(Path(cert[0]).read_text())
        subprocess.run(["lxc", "config", "trust", "remove", fingerprint], capture_output=True,
                       env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]})  # fmt: skip
        _common.discard(folder)
    _common.print_machine()
    every = [d for seen in delays.values() for d in seen]
    rows_out = []
    for action in ACTIONS:
        ms = _common.milliseconds(delays[action])
        rows_out.append((f"`lxc {action}`", len(delays[action]), f"{ms['median']:.0f}",
                         f"{ms['p95']:.0f}", f"{ms['max']:.0f}"))  # fmt: skip
    overall = _common.milliseconds(every)
    rows_out.append(("all", len(every), f"{overall['median']:.0f}", f"{overall['p95']:.0f}",
                     f"{overall['max']:.0f}"))  # fmt: skip
    _common.print_table(["change by hand", "n", "median ms", "p95 ms", "max ms"], rows_out)
    interval = settings.HOST_SYNC_MINUTES * 60
    print(
        f"Without the watcher (beat's full sync every {interval} s, computed): median "
        f"{interval / 2:.0f} s, p95 {0.95 * interval:.0f} s; one full sync of "
        f"{lab_host['name']} took {full_sync * 1000:.0f} ms."
    )
    print(f"p95 with the watcher / p95 without: {overall['p95'] / 1000 / (0.95 * interval):.5f}")


if __name__ == "__main__":
    main()
