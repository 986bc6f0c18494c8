"""Plain helpers for the lab tests (pytest fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pylxd import Client
from pylxd.exceptions import LXDAPIException, NotFound

ROOT = Path(__file__).resolve().parents[2]


def lab_command(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], check=True)


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
        except (LXDAPIException, ValueError):
            value = -1
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
