"""Benchmark: the container list, and the pages that count containers, with thousands of rows.

Target (from the issue): the container list page with 2,000 containers across 10 hosts,
seeded in the database: server time and query count; under 150 ms, and a query count that
does not grow with the number of rows.

    .venv/bin/python bench/container_list.py [--runs 30] [--show-sql]

Seeds a throwaway SQLite database (never var/panel.sqlite3), logs in with django.test.Client
and times complete requests through the real URLs, middleware, views and templates: first
with 2,000 containers, then with 4,000 to show which figures grow with the rows. Prints the
figures; asserts nothing about them. No LXD is needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
import uuid

import _common

TARGET_MS = 150
HOSTS = 10
ROW_COUNTS = (2000, 4000)
WARMUP = 5
ROLES = ["web", "db", "cache", "worker", "ci", "proxy", "mail", "build"]
# LXD 5.0.2 reports 318 API extensions in /1.0; sync stores them in Host.facts.
API_EXTENSIONS = 318


def host_facts(number: int) -> dict:
    """Facts shaped like what panel.hosts.inventory.sync stores for an LXD 5.0.2 server."""
    return {
        "server": "lxd",
        "server_version": "5.0.2",
        "server_name": f"lxd{number:02d}",
        "kernel_version": "6.1.0-28-amd64",
        "architectures": ["x86_64", "i686"],
        "driver": "lxc | qemu",
        "driver_version": "5.0.2 | 7.2.0",
        "os": "Debian GNU/Linux 12",
        "storage": "zfs",
        "api_extensions": [f"api_extension_number_{i:03d}" for i in range(API_EXTENSIONS)],
        "auth": "trusted",
        "cpu_model": "Intel(R) Xeon(R) Gold 6226R CPU @ 2.90GHz",
        "cpu_vendor": "GenuineIntel",
        "cpu_architecture": "x86_64",
        "cpu_threads": 32,
        "cpu_flags": None,
        "memory_total": 137_438_953_472,
        "system_type": "physical",
        "storage_pools": ["default"],
        "profiles": ["default"],
        "networks": ["lxdbr0", "eth0"],
    }


def instance_fields(index: int, rng: random.Random, now: dt.datetime) -> dict:
    """One container as record_inventory would store it; about 60% are running."""
    running = rng.random() < 0.6
    hwaddr = "00:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
    veth = f"veth{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
    config = {
        "image.architecture": "amd64",
        "image.description": "Debian bookworm amd64 (20240101_05:24)",
        "image.os": "Debian",
        "image.release": "bookworm",
        "image.serial": "20240101_05:24",
        "image.type": "squashfs",
        "limits.cpu": str(rng.choice([1, 2, 4])),
        "limits.memory": rng.choice(["512MiB", "1GiB", "4GiB"]),
        "volatile.base_image": uuid.UUID(int=rng.getrandbits(128)).hex * 2,
        "volatile.cloud-init.instance-id": str(uuid.UUID(int=rng.getrandbits(128))),
        "volatile.eth0.host_name": veth if running else "",
        "volatile.eth0.hwaddr": hwaddr,
        "volatile.idmap.base": "0",
        "volatile.idmap.current": '[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,'
        '"Maprange":1000000000},{"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,'
        '"Maprange":1000000000}]',
        "volatile.last_state.power": "RUNNING" if running else "STOPPED",
        "volatile.uuid": str(uuid.UUID(int=rng.getrandbits(128))),
    }
    devices = {
        "eth0": {"name": "eth0", "network": "lxdbr0", "type": "nic"},
        "root": {"path": "/", "pool": "default", "type": "disk"},
    }
    state = {"pid": 0, "processes": 0, "cpu_usage_ns": 0, "memory_usage": 0, "memory_peak": 0}
    state["network"] = {}
    if running:
        memory = rng.randrange(8 << 20, 2 << 30)
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
        state = {
            "pid": rng.randrange(1000, 4_000_000),
            "processes": rng.randrange(3, 120),
            "cpu_usage_ns": rng.randrange(10**9, 10**13),
            "memory_usage": memory,
            "memory_peak": memory + rng.randrange(1 << 20, 64 << 20),
            "network": {
                "eth0": {
                    "addresses": [
                        {"family": "inet", "address": address, "netmask": "24", "scope": "global"},
                        {
                            "family": "inet6",
                            "address": f"fd42::{index:x}",
                            "netmask": "64",
                            "scope": "global",
                        },
                    ],
                    "counters": {
                        "bytes_received": rng.randrange(10**9),
                        "bytes_sent": rng.randrange(10**9),
                        "packets_received": rng.randrange(10**6),
                        "packets_sent": rng.randrange(10**6),
                        "errors_received": 0,
                        "errors_sent": 0,
                        "packets_dropped_outbound": 0,
                        "packets_dropped_inbound": 0,
                    },
                    "hwaddr": hwaddr,
                    "host_name": veth,
                    "mtu": 1500,
                    "state": "up",
                    "type": "broadcast",
                },
                "lo": {
                    "addresses": [
                        {"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}
                    ],
                    "counters": {"bytes_received": 0, "bytes_sent": 0},
                    "hwaddr": "",
                    "host_name": "",
                    "mtu": 65536,
                    "state": "up",
                    "type": "loopback",
                },
            },
        }
    created = now - dt.timedelta(days=rng.randrange(1, 900), seconds=rng.randrange(86400))
    return {
        "name": f"{rng.choice(ROLES)}-{index:05d}",
        "status": "Running" if running else "Stopped",
        "architecture": "x86_64",
        "description": "",
        "profiles": ["default"],
        "expanded_config": config,
        "expanded_devices": devices,
        "state": state,
        "created_at": created,
        "last_used_at": now - dt.timedelta(hours=rng.randrange(1, 2000)) if running else None,
        "synced_at": now,
    }


def seed_hosts() -> list:
    from django.utils import timezone

    from panel.models import Host

    now = timezone.now()
    return Host.objects.bulk_create(
        Host(
            name=f"lxd{number:02d}",
            endpoint=f"https://lxd{number:02d}.example:8443",
            status=Host.Status.ONLINE,
            server_version="5.0.2",
            facts=host_facts(number),
            last_contact=now,
            last_sync=now,
        )
        for number in range(1, HOSTS + 1)
    )


def seed_instances(hosts: list, start: int, stop: int) -> None:
    """Instances start..stop-1 spread round-robin over the hosts; every 20th has snapshots."""
    from django.utils import timezone

    from panel.models import Instance, Snapshot

    rng = random.Random(start)  # noqa: S311 (made-up rows, not secrets)
    now = timezone.now()
    instances = Instance.objects.bulk_create(
        Instance(host=hosts[index % len(hosts)], **instance_fields(index, rng, now))
        for index in range(start, stop)
    )
    Snapshot.objects.bulk_create(
        Snapshot(
            instance=instance,
            name=f"snap{number}",
            created_at=now - dt.timedelta(days=number + 1),
            stateful=number == 0,
        )
        for instance in instances[::20]
        for number in range(3)
    )


def pages(rows: int, host_pk: int) -> list[tuple[str, str, dict]]:
    from django.urls import reverse

    from panel.web.views.instances import PAGE_SIZE

    containers = reverse("instance-list")
    filtered = f"{containers}?host=lxd03&state=Running&q=1"
    return [
        ("containers, page 1", containers, {}),
        ("containers, last page", f"{containers}?page={math.ceil(rows / PAGE_SIZE)}", {}),
        ("containers, filtered", filtered, {}),
        ("containers, filtered (htmx fragment)", filtered, {"HX-Request": "true"}),
        ("dashboard", reverse("dashboard"), {}),
        ("hosts", reverse("host-list"), {}),
        ("host detail (not paginated)", reverse("host-detail", args=[host_pk]), {}),
    ]


def get(client, url: str, headers: dict):
    response = client.get(url, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}: {response.content[:300]}")
    return response


def measure(client, url: str, headers: dict, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARMUP):
        get(client, url, headers)
    samples = []
    with _common.FullCollections() as collections:
        for _ in range(runs):
            started = time.perf_counter()
            get(client, url, headers)
            samples.append(time.perf_counter() - started)
    # Counted on a separate request so that capturing never adds to the timed ones.
    with CaptureQueriesContext(connection) as queries:
        response = get(client, url, headers)
    return {
        **_common.milliseconds(samples),
        "queries": len(queries.captured_queries),
        "sql": [query["sql"] for query in queries.captured_queries],
        "kb": len(response.content) / 1024,
        "full_gcs": collections.count,
    }


def run_pages(client, rows: int, host_pk: int, runs: int) -> dict[str, dict]:
    results = {}
    for label, url, headers in pages(rows, host_pk):
        _common.progress(f"{rows} rows: {label} ({url})")
        results[label] = {"url": url, **measure(client, url, headers, runs)}
    return results


def print_results(rows: int, results: dict[str, dict]) -> None:
    print(f"## {rows} containers across {HOSTS} hosts\n")
    _common.print_table(
        [
            "page",
            "url",
            "median ms",
            "p95 ms",
            "max ms",
            "full GCs",
            "SQL queries",
            "HTML KB",
            f"p95 < {TARGET_MS} ms",
        ],
        [
            (
                label,
                r["url"],
                f"{r['median']:.1f}",
                f"{r['p95']:.1f}",
                f"{r['max']:.1f}",
                r["full_gcs"],
                r["queries"],
                f"{r['kb']:.0f}",
                "PASS" if r["p95"] < TARGET_MS else "FAIL",
            )
            for label, r in results.items()
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page")
    parser.add_argument("--show-sql", action="store_true", help="print each page's queries")
    args = parser.parse_args()

    folder = _common.isolate("list")
    try:
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        _common.progress("collecting static files (the templates use the manifest storage)")
        call_command("collectstatic", interactive=False, verbosity=0)
        user = User.objects.create_superuser("bench", password=None)
        client = Client()
        client.force_login(user)

        hosts = seed_hosts()
        by_rows, seeded = {}, 0
        for rows in ROW_COUNTS:
            started = time.perf_counter()
            seed_instances(hosts, seeded, rows)
            _common.progress(
                f"seeded {rows - seeded} containers in {time.perf_counter() - started:.1f}s"
            )
            seeded = rows
            by_rows[rows] = run_pages(client, rows, hosts[0].pk, args.runs)

        print(
            f"# bench/container_list.py: {args.runs} timed requests per page "
            f"after {WARMUP} warm-up requests\n"
        )
        _common.print_machine()
        print(
            "Server time is measured around django.test.Client.get (URL routing, middleware, "
            "view, template, SQLite on a file); the SQL count comes from one more request. "
            "'full GCs' counts CPython's generation-2 collections during the timed requests: "
            "each pauses the process for tens of ms and explains most of the max column.\n"
        )
        for rows, results in by_rows.items():
            print_results(rows, results)

        small, large = ROW_COUNTS
        print(f"## Does the query count grow with the rows? ({small} vs {large} containers)\n")
        _common.print_table(
            [
                "page",
                f"queries at {small}",
                f"queries at {large}",
                "grows",
                f"median ms at {small}",
                f"median ms at {large}",
            ],
            [
                (
                    label,
                    by_rows[small][label]["queries"],
                    by_rows[large][label]["queries"],
                    "no"
                    if by_rows[small][label]["queries"] == by_rows[large][label]["queries"]
                    else "YES",
                    f"{by_rows[small][label]['median']:.1f}",
                    f"{by_rows[large][label]['median']:.1f}",
                )
                for label in by_rows[small]
            ],
        )
        if args.show_sql:
            for label, result in by_rows[small].items():
                print(f"## SQL of '{label}' at {small} containers\n")
                for number, sql in enumerate(result["sql"], 1):
                    print(f"{number}. {sql}\n")
    finally:
        _common.discard(folder)


if __name__ == "__main__":
    sys.exit(main())
