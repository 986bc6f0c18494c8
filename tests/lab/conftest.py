"""pylxd clients for the lab's hosts, and counter containers that clean up after themselves.

Session handling, and why: this machine sets REQUESTS_CA_BUNDLE, and requests lets that
variable override a session's `verify` whenever `session.trust_env` is true (it is merged in
`Session.merge_environment_settings`). pylxd's `Client` builds its session with
`pylxd.client.get_session_for_url(url, verify=..., cert=...)`, which mounts `LXDSSLAdapter`
when `verify` is a path: that adapter pins the server certificate by its SHA-256 fingerprint
instead of checking a CA chain. We build the session with that same function, passing the
host's own `server.crt` (read from its LXD tree on this machine), and set `trust_env = False`
so the environment cannot replace the pin. Stronger than `verify=False`, and it never reads
proxies or CA settings from the environment either.

Trust: LXD 5.0 hosts take the trust password of state.json. Incus hosts have no passwords; the
test client asks `lab.py token incusN` for a fresh single-use token and sends it itself,
because pylxd 2.4.2's `authenticate()` sends it as a password, which Incus refuses
(lab/README.md, "Trust on Incus").
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab_helpers import (
    REQUEST_TIMEOUT,
    lab_output,
    read_boot_id,
    remove_everywhere,
    session_for,
    trust_with_token,
    wait_for_counter,
)
from pylxd import Client

from panel import lxd

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "var" / "lab" / "test-client"
# pylxd warns about every field LXD 5.0 returns that its models lack; that noise hides output.
os.environ.setdefault("PYLXD_WARNINGS", "none")


@pytest.fixture(scope="session")
def lab_state(lab: dict) -> dict:
    """The lab's state file; the top-level `lab` fixture fails (in CI) or skips without it."""
    return lab


@pytest.fixture(scope="session")
def client_cert() -> tuple[str, str]:
    """One client certificate for the lab tests, generated on first use."""
    return lxd.ensure_client_certificate(CLIENT_DIR)


def connect(host: dict, cert: tuple[str, str]) -> Client:
    session = session_for(host, cert)
    client = Client(endpoint=host["url"], cert=cert, session=session, timeout=REQUEST_TIMEOUT)
    if not client.trusted:
        if "trust_password" in host:  # LXD 5.0
            client.authenticate(host["trust_password"], use_token_auth=False)
        else:  # Incus: no passwords; a fresh single-use token from the lab
            trust_with_token(client, lab_output("token", host["name"]))
    assert client.trusted, f"{host['name']} did not trust the test client certificate"
    return client


@pytest.fixture(scope="session")
def lab_clients(lab_state: dict, client_cert: tuple[str, str]) -> dict[str, Client]:
    return {host["name"]: connect(host, client_cert) for host in lab_state["hosts"]}


@pytest.fixture(scope="session")
def host_names(lab_state: dict) -> list[str]:
    return [host["name"] for host in lab_state["hosts"]]


@pytest.fixture(scope="session")
def incus_hosts(lab_state: dict) -> list[dict]:
    """state.json's Incus hosts, at least two (`lab.py up --incus 2`, as bin/test does)."""
    hosts = lab_state.get("incus_hosts") or []
    if len(hosts) < 2:
        pytest.skip(f"{len(hosts)} Incus hosts in the lab: run python3 lab/lab.py up --incus 2")
    return hosts


@pytest.fixture(scope="session")
def incus_clients(incus_hosts: list[dict], client_cert: tuple[str, str]) -> dict[str, Client]:
    return {host["name"]: connect(host, client_cert) for host in incus_hosts}


@pytest.fixture(scope="session")
def incus_names(incus_hosts: list[dict]) -> list[str]:
    return [host["name"] for host in incus_hosts]


@pytest.fixture
def counter_container(
    request: pytest.FixtureRequest, lab_state: dict, lab_clients: dict[str, Client]
) -> Iterator[Callable[..., object]]:
    """Factory: a RUNNING container from the counter image whose counter reached 3, its root
    disk on `pool` (a pool of state.json's per-host "pools"; default: the profile's, `default`),
    with `config` (e.g. Incus 6.0.4 takes stateful snapshots only with migration.stateful).
    `host` is an LXD host (host1...) or an Incus host (incus1...).

    Each test's containers get unique names and are deleted on every host of their kind at
    the end, whether the test passed or not.
    """
    created: list[tuple[dict[str, Client], str]] = []
    incus_names = {h["name"] for h in lab_state.get("incus_hosts") or []}

    def create(host: str, pool: str | None = None, config: dict | None = None):
        clients = request.getfixturevalue("incus_clients") if host in incus_names else lab_clients
        name = f"lab-{uuid.uuid4().hex[:10]}"
        created.append((clients, name))
        client = clients[host]
        spec: dict = {
            "name": name,
            "source": {"type": "image", "alias": lab_state["image_alias"]},
        }
        if pool:
            spec["devices"] = {"root": {"type": "disk", "path": "/", "pool": pool}}
        if config:
            spec["config"] = config
        instance = client.instances.create(spec, wait=True)
        instance.start(wait=True)
        value = wait_for_counter(instance, 3)
        where = f"{host} ({pool})" if pool else host
        print(f"\n{name} on {where}: RUNNING, counter {value}, boot {read_boot_id(instance)}")
        return instance

    yield create
    for clients, name in created:
        with contextlib.suppress(Exception):
            remove_everywhere(clients, name)
