"""Benchmark: building the bug-report bundle of a failed migration on the lab.

Target (from the issue): time to build the bundle for a failed migration, and its size;
under 5 s.

    python3 lab/lab.py up                  # the lab must be up (as root), Redis answering
    PANEL_REDIS_URL=redis://127.0.0.1:6399/5 .venv/bin/python bench/bundle_build.py [--runs 5]

Launches a counter container `bench-bundle-*` on host1 with a stateful snapshot (so the agent
has checkpoint images and CRIU statistics to list), enrolls host1 and host2 in a throwaway
database, records a FAILED migrate operation host1 -> host2 with a timeline, starts the lab's
agents on the given Redis, and times workers.bundles.build (the plain function behind the
task: API calls to both hosts, both agents, redaction, manifest, report, tarball) several
times. The failed migration is a recorded row, not a migration run here: what is measured is
the bundle, which reads the same hosts and files either way. Deletes the container, stops the
agents and removes its client certificate from both hosts' trust stores at the end. Prints
figures; asserts nothing about them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, discard, isolate, milliseconds, print_machine, print_table


def lxc(host: dict, *args: str) -> str:
    env = {**os.environ, "LXD_DIR": host["lxd_dir"]}
    return subprocess.run(["lxc", *args], env=env, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lab = json.loads((ROOT / "var" / "lab" / "state.json").read_text())
    redis_url = os.environ.get("PANEL_REDIS_URL", "redis://127.0.0.1:6399/5")
    os.environ["PANEL_REDIS_URL"] = redis_url
    folder = isolate("bundle")
    from django.conf import settings

    from panel import lxd
    from panel.models import Bundle, Host, Operation
    from workers.bundles import build
    from workers.hosts import sync

    host1, host2 = lab["hosts"][:2]
    name = f"bench-bundle-{os.getpid()}"
    lab_py = ["python3", str(ROOT / "lab" / "lab.py"), "agents"]
    client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    try:
        lxc(host1, "launch", lab["image_alias"], name)
        time.sleep(3)
        lxc(host1, "snapshot", name, "cp0", "--stateful")
        subprocess.run([*lab_py, "start", "--python", sys.executable, "--redis-url", redis_url],
                       check=True, capture_output=True)  # fmt: skip
        hosts = []
        for lab_host in (host1, host2):
            pem = (Path(lab_host["lxd_dir"]) / "server.crt").read_text()
            lxd.trust(lxd.Target(lab_host["url"], pem, client_cert), lab_host["trust_password"])
            host = Host.objects.create(name=lab_host["name"], endpoint=lab_host["url"],
                                       server_certificate=pem)  # fmt: skip
            sync(host)
            hosts.append(host)
        instance = hosts[0].instances.get(name=name)
        operation = Operation.objects.create(
            kind="migrate", instance=instance, instance_name=name, source_host=hosts[0],
            target_host=hosts[1], status=Operation.Status.FAILED, outcome="Migration failed.",
            error="Error: migration restore failed",
        )  # fmt: skip
        for stage in ("preflight", "dumping", "transferring", "restoring"):
            operation.log(f"entered {stage}", stage)
        time.sleep(5)  # let the agents finish starting (a first probe would pay for it)
        timings, sizes, missing = [], [], []
        for _ in range(args.runs):
            bundle = Bundle.objects.create(operation=operation, instance=instance,
                                           instance_name=name)  # fmt: skip
            started = time.perf_counter()
            build(bundle)
            timings.append(time.perf_counter() - started)
            sizes.append(bundle.size)
            missing.append(bundle.manifest["summary"]["missing"])
            items = bundle.manifest["summary"]["items"]
        print_machine()
        figures = milliseconds(timings)
        print(f"\nBundle of a failed migration host1 -> host2 ({args.runs} builds, agents on "
              f"{redis_url}); target: under 5000 ms\n")  # fmt: skip
        print_table(
            ["figure", "value"],
            [(key, f"{value:.0f} ms") for key, value in figures.items()]
            + [("size (tar.gz)", f"{min(sizes)}..{max(sizes)} bytes"),
               ("items", f"{items} ({max(missing)} missing: see manifest)")],
        )  # fmt: skip
    finally:
        subprocess.run([*lab_py, "stop"], check=False, capture_output=True)
        subprocess.run(["lxc", "delete", "--force", name], env={**os.environ,
                       "LXD_DIR": host1["lxd_dir"]}, check=False, capture_output=True)  # fmt: skip
        fingerprint = lxd.certificate_fingerprint(Path(client_cert[0]).read_text())
        for lab_host in (host1, host2):
            subprocess.run(["lxc", "config", "trust", "remove", fingerprint],
                           env={**os.environ, "LXD_DIR": lab_host["lxd_dir"]},
                           check=False, capture_output=True)  # fmt: skip
        discard(folder)


if __name__ == "__main__":
    main()
