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
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab_helpers import read_boot_id, remove_everywhere, wait_for_counter
from pylxd import Client
from pylxd.client import get_session_for_url

from panel import lxd

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "var" / "lab" / "test-client"
REQUEST_TIMEOUT = 120  # seconds for one HTTP request, /wait included
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
    server_cert = str(Path(host["lxd_dir"]) / "server.crt")
    session = get_session_for_url(host["url"], verify=server_cert, cert=cert)
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the pinned certificate
    client = Client(endpoint=host["url"], cert=cert, session=session, timeout=REQUEST_TIMEOUT)
    if not client.trusted:
        client.authenticate(host["trust_password"], use_token_auth=False)
    assert client.trusted, f"{host['name']} did not trust the test client certificate"
    return client


@pytest.fixture(scope="session")
def lab_clients(lab_state: dict, client_cert: tuple[str, str]) -> dict[str, Client]:
    return {host["name"]: connect(host, client_cert) for host in lab_state["hosts"]}


@pytest.fixture(scope="session")
def host_names(lab_state: dict) -> list[str]:
    return [host["name"] for host in lab_state["hosts"]]


@pytest.fixture
def counter_container(
    lab_state: dict, lab_clients: dict[str, Client]
) -> Iterator[Callable[[str], object]]:
    """Factory: a RUNNING container from the counter image whose counter reached 3.

    Each test's containers get unique names and are deleted on every host at the end,
    whether the test passed or not.
    """
    names: list[str] = []

    def create(host: str):
        name = f"lab-{uuid.uuid4().hex[:10]}"
        names.append(name)
        client = lab_clients[host]
        config = {
            "name": name,
            "source": {"type": "image", "alias": lab_state["image_alias"]},
        }
        instance = client.instances.create(config, wait=True)
        instance.start(wait=True)
        value = wait_for_counter(instance, 3)
        print(f"\n{name} on {host}: RUNNING, counter {value}, boot {read_boot_id(instance)}")
        return instance

    yield create
    for name in names:
        with contextlib.suppress(Exception):
            remove_everywhere(lab_clients, name)
