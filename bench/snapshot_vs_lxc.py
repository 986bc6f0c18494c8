"""Stateful snapshot through the panel (click to verified success) against
`lxc snapshot --stateful`, on the same lab host, in alternation.

Run (lab up, as root):  .venv/bin/python bench/snapshot_vs_lxc.py [--pairs 7]

The panel side is real end to end: the POST goes through Django's full view stack, a real
Celery worker (its own process) on a real Redis takes the operation, talks HTTPS to the lab
host, follows LXD's operation and verifies the snapshot; the clock stops when the Operation
row says succeeded (observed every 10 ms, finer than the browser's 1 s poll, so the figure
is the panel's own time and not the polling interval). The `lxc` side is the CLI on the
host's unix socket, as an admin on the host would run it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
REDIS_PORT = 6397
os.environ.update(
    DJANGO_SETTINGS_MODULE="panel.settings",
    PANEL_DATA_DIR=str(WORK),
    PANEL_DATABASE_URL=f"sqlite:///{WORK / 'bench.sqlite3'}",
    PANEL_REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
    PANEL_ALLOWED_HOSTS="testserver",  # Django's test client, used here outside pytest
)

import django  # noqa: E402

django.setup()

from _common import lab_state, start_redis_and_worker, stop  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from panel import lxd  # noqa: E402
from panel.models import Host, Instance, Operation  # noqa: E402
from workers.hosts import sync  # noqa: E402


def lxc(lab_host: dict, *args: str) -> None:
    env = {**os.environ, "LXD_DIR": lab_host["lxd_dir"]}
    subprocess.run(["lxc", *args], env=env, check=True, capture_output=True, timeout=300)


def enroll(lab_host: dict) -> Host:
    pem = (Path(lab_host["lxd_dir"]) / "server.crt").read_text()
    client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    lxd.trust(lxd.Target(lab_host["url"], pem, client_cert), lab_host["trust_password"])
    host = Host.objects.create(name=lab_host["name"], endpoint=lab_host["url"],
                               server_certificate=pem)  # fmt: skip
    sync(host)
    return host


def panel_snapshot(client: Client, instance: Instance, name: str) -> float:
    started = time.perf_counter()
    response = client.post(
        f"/containers/{instance.pk}/operations/", {"kind": "stateful_snapshot", "snapshot": name}
    )
    pk = int(response["Location"].split("/")[2])
    while True:
        status = Operation.objects.filter(pk=pk).values_list("status", flat=True).get()
        if status not in Operation.ACTIVE:
            elapsed = time.perf_counter() - started
            if status != Operation.Status.SUCCEEDED:
                raise SystemExit(f"panel snapshot {name} ended {status}")
            return elapsed
        time.sleep(0.01)


def lxc_snapshot(lab_host: dict, container: str, name: str) -> float:
    started = time.perf_counter()
    lxc(lab_host, "snapshot", container, name, "--stateful")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    lab = lab_state(hosts=2)
    lab_host = lab["hosts"][0]
    container = f"bench-snap-{uuid.uuid4().hex[:6]}"
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    services = start_redis_and_worker(WORK, REDIS_PORT, "bench-snapshot")
    host = None
    try:
        lxc(lab_host, "launch", lab["image_alias"], container)
        time.sleep(3)
        host = enroll(lab_host)
        instance = Instance.objects.get(host=host, name=container)
        from django.contrib.auth.models import User

        client = Client()
        client.force_login(User.objects.create_superuser("bench", password="x" * 20))
        panel_snapshot(client, instance, "warmup-p")  # first runs pay one-off costs
        lxc_snapshot(lab_host, container, "warmup-l")
        pairs = []
        for number in range(args.pairs):
            order = ["panel", "lxc"] if number % 2 == 0 else ["lxc", "panel"]
            times = {}
            for side in order:
                if side == "panel":
                    times[side] = panel_snapshot(client, instance, f"p{number}")
                else:
                    times[side] = lxc_snapshot(lab_host, container, f"l{number}")
            pairs.append(times)
            print(f"pair {number + 1}: panel {times['panel']:.3f} s, lxc {times['lxc']:.3f} s, "
                  f"ratio {times['panel'] / times['lxc']:.3f}", flush=True)  # fmt: skip
        report(pairs)
    finally:
        lab_env = {**os.environ, "LXD_DIR": lab_host["lxd_dir"]}
        subprocess.run(["lxc", "delete", "--force", container], env=lab_env, capture_output=True)
        if host is not None:
            cert = Path(settings.PANEL_CLIENT_CERT_DIR) / "client.crt"
            fingerprint = lxd.certificate_fingerprint(cert.read_text())
            subprocess.run(["lxc", "config", "trust", "remove", fingerprint], env=lab_env,
                           capture_output=True)  # fmt: skip
        stop(services)
        shutil.rmtree(WORK, ignore_errors=True)


def report(pairs: list[dict]) -> None:
    panel = [p["panel"] for p in pairs]
    lxc_times = [p["lxc"] for p in pairs]
    ratios = [p["panel"] / p["lxc"] for p in pairs]
    print()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"Django {django.get_version()}, {time.strftime('%Y-%m-%d %H:%M %Z')}")  # fmt: skip
    print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
    for label, values in (
        ("panel (click→verified)", panel),
        ("lxc snapshot --stateful", lxc_times),
    ):
        print(
            f"{label:24}{statistics.median(values):>9.3f}s{min(values):>9.3f}s{max(values):>9.3f}s"
        )
    print(f"median of per-pair ratios (panel / lxc): {statistics.median(ratios):.3f} "
          f"(target <= 1.10) over {len(pairs)} pairs")  # fmt: skip


if __name__ == "__main__":
    main()
