"""Acceptance tests of the lab's btrfs pools: every LXD host has a loop-backed btrfs pool `bt`
beside the `dir` pool `default` (state.json: each host's "pools"), and CRIU work on it keeps
the process, as on `dir`. On btrfs LXD transfers the filesystem natively and skips the final
rsync that makes a live migration on `dir` stand still for about ten seconds (lab/README.md,
"btrfs pools").

Run: .venv/bin/pytest -m lab tests/lab -s   (after python3 lab/lab.py up)
"""

from __future__ import annotations

import pytest
from lab_helpers import (
    assert_moved,
    measured_live_migration,
    read_boot_id,
    read_counter,
    refresh,
    wait_for_counter,
)
from pylxd import Client

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

POOL = "bt"
# On `dir` the counter stands still about 11 s in a live migration, on `bt` under a second
# (lab/README.md): a generous bound that still tells the two apart.
MAX_BTRFS_DOWNTIME = 5.0


def root_pool(instance) -> str:
    refresh(instance)
    return instance.expanded_devices["root"]["pool"]


def test_every_host_has_the_pools_state_json_names(lab_state: dict, lab_clients):
    for host in lab_state["hosts"]:
        assert host["pools"] == {"default": "dir", POOL: "btrfs"}
        client: Client = lab_clients[host["name"]]
        for name, driver in host["pools"].items():
            pool = client.storage_pools.get(name)
            assert pool.driver == driver, f"{host['name']}: pool {name} is {pool.driver}"
            assert pool.status == "Created", f"{host['name']}: pool {name} is {pool.status}"
        default_profile = client.profiles.get("default")
        assert default_profile.devices["root"]["pool"] == "default", "dir stays the default"


def test_stateful_snapshot_restore_on_btrfs_continues_the_counter(host_names, counter_container):
    container = counter_container(host_names[0], pool=POOL)
    assert root_pool(container) == POOL
    boot = read_boot_id(container)

    before = read_counter(container)
    container.snapshots.create("checkpoint", stateful=True, wait=True)
    after = read_counter(container)
    later = wait_for_counter(container, after + 4)

    container.restore_snapshot("checkpoint", stateful=True, wait=True)
    refresh(container)
    restored = read_counter(container)
    print(f"checkpoint between {before} and {after}, later {later}, after restore {restored}")

    assert container.status == "Running"
    assert before <= restored <= after + 2, "the counter did not resume from the checkpoint"
    assert restored < later
    assert read_boot_id(container) == boot, "init restarted instead of being restored"
    wait_for_counter(container, restored + 2, timeout=10)


def test_live_migration_on_btrfs_continues_the_counter_with_short_downtime(
    lab_clients: dict[str, Client], host_names, counter_container
):
    if len(host_names) < 2:
        pytest.fail("live migration needs two hosts: python3 lab/lab.py up --hosts 2")
    first, second = lab_clients[host_names[0]], lab_clients[host_names[1]]
    container = counter_container(host_names[0], pool=POOL)
    name, boot = container.name, read_boot_id(container)

    before = read_counter(container)
    seconds, downtime = measured_live_migration(first, second, name)
    there = assert_moved(first, second, name, boot, before)
    assert root_pool(second.instances.get(name)) == POOL
    print(
        f"{host_names[0]} -> {host_names[1]} on {POOL}: {seconds:.1f}s in all, counter stood "
        f"still ~{downtime:.1f}s, counter {before} -> {there}"
    )
    assert downtime < MAX_BTRFS_DOWNTIME, f"downtime {downtime:.1f}s: as slow as on dir?"

    seconds, downtime = measured_live_migration(second, first, name)
    back = assert_moved(second, first, name, boot, there)
    assert root_pool(first.instances.get(name)) == POOL
    print(
        f"{host_names[1]} -> {host_names[0]} on {POOL}: {seconds:.1f}s in all, counter stood "
        f"still ~{downtime:.1f}s, counter {there} -> {back}"
    )
    assert downtime < MAX_BTRFS_DOWNTIME, f"downtime {downtime:.1f}s: as slow as on dir?"
