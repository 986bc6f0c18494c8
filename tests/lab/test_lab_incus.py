"""Acceptance tests of the lab's Incus 6.0.4 hosts (`lab.py up --incus 2`): the same CRIU
work as on the LXD hosts, through the same REST API, with the counter container (its counter
continues and its boot id stays the same when the process really survives).

What differs from LXD 5.0 (lab/README.md, "Incus hosts"): no trust passwords, single-use trust
tokens instead, which pylxd 2.4.2 cannot send; stateful snapshots and stateful stops need
migration.stateful=true on the container.

Run: .venv/bin/pytest -m lab tests/lab -s   (after python3 lab/lab.py up --incus 2)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from lab_helpers import (
    REQUEST_TIMEOUT,
    assert_moved,
    lab_command,
    lab_output,
    measured_live_migration,
    read_boot_id,
    read_counter,
    refresh,
    session_for,
    trust_with_token,
    wait_for_counter,
)
from pylxd import Client
from pylxd.exceptions import LXDAPIException

from panel import lxd

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

# Incus 6.0.4 refuses stateful snapshots and stateful stops without it (live migration does
# not need it); the test containers that do either have it from the start.
STATEFUL = {"migration.stateful": "true"}


def incus(host: dict, *args: str) -> str:
    """The `incus` client on the host's unix socket (INCUS_DIR), for checks beside the API."""
    result = subprocess.run(
        ["incus", *args],
        env={**os.environ, "INCUS_DIR": host["incus_dir"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def token_secret(token: str) -> str:
    """A token is base64 of JSON: the client's name, the server's fingerprint and addresses,
    and the secret the server checks."""
    return json.loads(base64.b64decode(token))["secret"]


def test_incus_hosts_are_what_state_json_says(lab_state, incus_hosts, incus_clients):
    for host in incus_hosts:
        client: Client = incus_clients[host["name"]]
        environment = client.host_info["environment"]
        assert environment["server"] == "incus"
        assert environment["server_version"].startswith("6.0.")
        assert f"{host['address']}:8443" in environment["addresses"]
        assert client.host_info["auth"] == "trusted"
        assert host["criu"] == "fixed"
        assert host["pools"] == {"default": "dir", "bt": "btrfs"}
        for name, driver in host["pools"].items():
            pool = client.storage_pools.get(name)
            assert (pool.driver, pool.status) == (driver, "Created"), f"{host['name']} {name}"
        assert client.profiles.get("default").devices["root"]["pool"] == "default"
        assert client.images.get_by_alias(lab_state["image_alias"])
        # The token `up` keeps for the panel's tests is still unused.
        pending = json.loads(incus(host, "config", "trust", "list-tokens", "--format", "json"))
        assert token_secret(host["trust_token"]) in {entry["secret"] for entry in pending}


def test_a_trust_token_enrolls_a_client_certificate_over_https(incus_hosts, tmp_path):
    host = incus_hosts[0]
    cert = lxd.ensure_client_certificate(tmp_path / "new")
    client = Client(
        endpoint=host["url"], cert=cert, session=session_for(host, cert), timeout=REQUEST_TIMEOUT
    )
    assert not client.trusted
    name = f"lab-enroll-{uuid.uuid4().hex[:8]}"
    token = lab_output("token", host["name"], "--name", name)
    try:
        # pylxd's own way sends the token as a trust password, which Incus does not have.
        with pytest.raises(LXDAPIException, match="not authorized"):
            client.authenticate(token, use_token_auth=True)
        trust_with_token(client, token)
        assert client.trusted
        trusted = {c["name"]: c for c in json.loads(incus(host, "config", "trust", "ls", "-fjson"))}
        assert trusted[name]["fingerprint"] == lxd.certificate_fingerprint(
            Path(cert[0]).read_text()
        )

        # Single use: the same token does not enroll a second certificate (the token is a
        # pending operation on the server, gone once used).
        other = lxd.ensure_client_certificate(tmp_path / "other")
        second = Client(
            endpoint=host["url"],
            cert=other,
            session=session_for(host, other),
            timeout=REQUEST_TIMEOUT,
        )
        with pytest.raises(LXDAPIException, match="No matching certificate add operation"):
            trust_with_token(second, token)
        assert not second.trusted
    finally:
        for entry in json.loads(incus(host, "config", "trust", "ls", "-fjson")):
            if entry["name"] == name:
                incus(host, "config", "trust", "remove", entry["fingerprint"])


def test_stateful_snapshot_and_stop_need_migration_stateful(incus_names, counter_container):
    container = counter_container(incus_names[0])
    boot = read_boot_id(container)
    with pytest.raises(LXDAPIException) as refused_snapshot:
        container.snapshots.create("refused", stateful=True, wait=True)
    print(f"stateful snapshot without migration.stateful: {refused_snapshot.value}")
    assert "migration.stateful" in str(refused_snapshot.value)
    with pytest.raises(LXDAPIException) as refused_stop:
        response = container.api.state.put(json={"action": "stop", "stateful": True})
        container.client.operations.wait_for_operation(response.json()["operation"])
    print(f"stateful stop without migration.stateful: {refused_stop.value}")
    assert "migration.stateful" in str(refused_stop.value)

    refresh(container)
    assert container.status == "Running"
    assert read_boot_id(container) == boot


@pytest.mark.parametrize("pool", ["default", "bt"])
def test_stateful_snapshot_restore_continues_the_counter(incus_names, counter_container, pool):
    container = counter_container(incus_names[0], pool=pool, config=STATEFUL)
    boot = read_boot_id(container)

    before = read_counter(container)
    container.snapshots.create("checkpoint", stateful=True, wait=True)
    after = read_counter(container)
    assert container.snapshots.get("checkpoint").stateful
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


def test_stateful_stop_then_start_continues_the_counter(
    incus_clients: dict[str, Client], incus_names, counter_container
):
    host = incus_names[0]
    container = counter_container(host, config=STATEFUL)
    boot = read_boot_id(container)

    before = read_counter(container)
    response = container.api.state.put(json={"action": "stop", "stateful": True, "timeout": 60})
    incus_clients[host].operations.wait_for_operation(response.json()["operation"])
    refresh(container)
    assert container.status == "Stopped"
    assert container.stateful, "Incus kept no saved state for the stopped container"
    time.sleep(3)

    response = container.api.state.put(json={"action": "start", "stateful": True, "timeout": 60})
    incus_clients[host].operations.wait_for_operation(response.json()["operation"])
    refresh(container)
    resumed = read_counter(container)
    print(f"counter before stateful stop {before}, after start {resumed}")

    assert container.status == "Running"
    assert before <= resumed <= before + 3, "the counter did not resume from the saved state"
    assert read_boot_id(container) == boot, "init restarted instead of being restored"
    wait_for_counter(container, resumed + 2, timeout=10)


@pytest.mark.parametrize("pool", ["default", "bt"])
def test_live_migration_there_and_back_continues_the_counter(
    incus_clients: dict[str, Client], incus_names, counter_container, pool
):
    first, second = incus_clients[incus_names[0]], incus_clients[incus_names[1]]
    container = counter_container(incus_names[0], pool=pool, config=STATEFUL)
    name, boot = container.name, read_boot_id(container)

    before = read_counter(container)
    seconds, downtime = measured_live_migration(first, second, name)
    there = assert_moved(first, second, name, boot, before)
    print(
        f"{incus_names[0]} -> {incus_names[1]} on {pool}: {seconds:.1f}s in all, counter stood "
        f"still ~{downtime:.1f}s, counter {before} -> {there}"
    )

    seconds, downtime = measured_live_migration(second, first, name)
    back = assert_moved(second, first, name, boot, there)
    print(
        f"{incus_names[1]} -> {incus_names[0]} on {pool}: {seconds:.1f}s in all, counter stood "
        f"still ~{downtime:.1f}s, counter {there} -> {back}"
    )


def test_stock_criu_fails_at_dump_and_the_container_keeps_running(incus_names, counter_container):
    """The shim's per-host switch works on Incus hosts too (it finds the mode file in
    /var/lib/incus there): with Debian 12's CRIU 3.17.1 the dump fails for real."""
    host = incus_names[0]
    container = counter_container(host, config=STATEFUL)
    boot = read_boot_id(container)
    lab_command("criu", host, "stock")
    try:
        with pytest.raises(LXDAPIException) as failure:
            container.snapshots.create("doomed", stateful=True, wait=True)
    finally:
        lab_command("criu", host, "fixed")
    print(f"stateful snapshot with stock CRIU failed as expected: {failure.value}")

    assert "dump failed" in str(failure.value)
    refresh(container)
    assert container.status == "Running"
    value = read_counter(container)
    assert read_boot_id(container) == boot
    wait_for_counter(container, value + 2, timeout=10)
