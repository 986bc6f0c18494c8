"""Plain helpers for the lab tests (pytest fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pylxd import Client
from pylxd.client import get_session_for_url
from pylxd.exceptions import LXDAPIException, NotFound

from tests.lab_tools import INCUS_FILE_SERVER_IDLE_EXIT, incus_file_server_orphaned

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT = 120  # seconds for one HTTP request, /wait included


def host_server_cert(host: dict) -> str:
    """The certificate to pin: <lxd_dir>/server.crt on LXD hosts, `server_cert` on Incus."""
    return host.get("server_cert") or str(Path(host["lxd_dir"]) / "server.crt")


def session_for(host: dict, cert: tuple[str, str] | None):
    """A requests session pinning the host's certificate (see conftest.py for why)."""
    session = get_session_for_url(host["url"], verify=host_server_cert(host), cert=cert)
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the pinned certificate
    return session


def lab_command(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], check=True)


def lab_output(*args: str) -> str:
    """What `lab.py ARGS` prints on stdout, stripped (e.g. `token incus1`: a fresh token)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "lab" / "lab.py"), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def trust_with_token(client: Client, token: str) -> None:
    """Have an Incus host trust the client's TLS certificate with a single-use trust token.

    pylxd 2.4.2's `client.authenticate(token)` looks for the API extension
    `explicit_trust_token`, which Incus 6.0.4 does not announce, and then sends the token as
    `password`: Incus answers "not authorized". Incus reads the token from `trust_token`, and
    takes the certificate from the TLS connection itself.
    """
    client.api.certificates.post(json={"type": "client", "trust_token": token})
    client.host_info = client.api.get().json()["metadata"]  # `trusted` reads host_info


def refresh(instance) -> None:
    """Re-read the instance from LXD.

    pylxd 2.4.2's plain `sync()` marks every attribute it sets as locally modified, and a later
    `sync()` skips modified attributes: from the second call on, `status` never changes.
    `sync(rollback=True)` overwrites everything and clears that mark.
    """
    instance.sync(rollback=True)


def read_file(instance, path: str, timeout: float = 10) -> str:
    """A file's content; the counter file is briefly empty while init rewrites it."""
    deadline = time.monotonic() + timeout
    while True:
        text = instance.files.get(path).decode().strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def read_counter(instance) -> int:
    return int(read_file(instance, "/tmp/counter"))


def read_boot_id(instance) -> str:
    return read_file(instance, "/tmp/boot")


def wait_for_counter(instance, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read_counter(instance)
        except (LXDAPIException, ValueError, requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as error:  # fmt: skip
            # Right after a restore, Incus's file API has cut a read short (requests raises
            # ChunkedEncodingError for urllib3's IncompleteRead; it is no ConnectionError):
            # the counter is read again, as while it is briefly empty.
            value = -1
            if incus_file_server_orphaned(str(error)):
                time.sleep(INCUS_FILE_SERVER_IDLE_EXIT)
        if value >= at_least:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{instance.name}: counter {value} never reached {at_least}")
        time.sleep(0.2)


def wait_for_status(instance, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        refresh(instance)
        if instance.status == status:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{instance.name}: status {instance.status}, never {status}")
        time.sleep(0.2)


def remove_everywhere(clients: dict[str, Client], name: str) -> None:
    """Force-delete the container wherever it is; retries while LXD is busy with it."""
    for client in clients.values():
        deadline = time.monotonic() + 60
        while True:
            try:
                instance = client.instances.get(name)
            except NotFound:
                break
            try:
                if instance.status != "Stopped":
                    instance.stop(force=True, wait=True)
                instance.delete(wait=True)
                break
            except LXDAPIException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def live_migrate(source: Client, target: Client, name: str) -> float:
    """Move a RUNNING container in pull mode, the way `lxc move` does; return the seconds taken.

    Not pylxd's Instance.migrate: it deletes the source as soon as the target's create call
    returns, and its request body misspells keys. LXD 5.0.2 stops the source copy itself after
    the final dump, and that stop can still be running when the delete comes (LAB.md section
    4: `busy running a "stop" operation`), so the source is deleted once it is free.
    """
    started = time.monotonic()
    instance = source.instances.get(name)
    response = instance.api.post(json={"migration": True, "live": True}).json()
    operation_id = response["operation"].rsplit("/", 1)[-1]
    body = {
        "name": name,
        "type": "container",
        "architecture": instance.architecture,
        "config": instance.config,
        "devices": instance.devices,
        "profiles": instance.profiles,
        "ephemeral": instance.ephemeral,
        "source": {
            "type": "migration",
            "mode": "pull",
            "live": True,
            "operation": source.api.operations[operation_id]._api_endpoint,
            "certificate": source.host_info["environment"]["certificate"],
            "secrets": response["metadata"]["metadata"],
        },
    }
    created = target.api.instances.post(json=body).json()
    target.operations.wait_for_operation(created["operation"])
    with contextlib.suppress(NotFound):  # LXD forgets finished operations after a few seconds
        source.operations.wait_for_operation(operation_id)
    delete_when_free(source, name)
    return time.monotonic() - started


def delete_when_free(client: Client, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            instance = client.instances.get(name)
            if instance.status == "Stopped":
                instance.delete(wait=True)
                return
            blocker = f"it is {instance.status}"
        except NotFound:
            return
        except LXDAPIException as error:
            blocker = str(error)
        if time.monotonic() > deadline:
            pytest.fail(f"the source copy of {name} could not be deleted: {blocker}")
        time.sleep(0.5)


def assert_moved(source: Client, target: Client, name: str, boot: str, before: int) -> int:
    with pytest.raises(NotFound):
        source.instances.get(name)
    moved = target.instances.get(name)
    assert moved.status == "Running"
    value = read_counter(moved)
    assert value >= before, "the counter went backwards: the container restarted"
    assert read_boot_id(moved) == boot, "init restarted instead of being restored"
    return wait_for_counter(moved, value + 2, timeout=10)


def measured_live_migration(source: Client, target: Client, name: str) -> tuple[float, float]:
    """Live-migrate `name`; return (seconds in all, seconds its counter stood still).

    The counter ticks once a second while the container runs, so the seconds it did not tick
    between a read on the source before and a read on the target after are the downtime, to
    about a second. Deleting the source copy afterwards does not count: the target runs then.
    """
    before, started = read_counter(source.instances.get(name)), time.monotonic()
    seconds = live_migrate(source, target, name)
    after, ended = read_counter(target.instances.get(name)), time.monotonic()
    return seconds, max(0.0, (ended - started) - (after - before))
