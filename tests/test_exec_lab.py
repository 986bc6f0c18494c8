"""The panel's one exec (panel/lxd/exec.py) on a real lab container: read whole when it is
small, capped while read when it floods, killed when it never ends; LXD's operation ends
either way and nothing is left running in the container."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from panel import lxd
from panel.hosts.connection import target_for
from tests.lab_tools import enroll, lxc, running_counter

pytestmark = [pytest.mark.lab, pytest.mark.django_db, pytest.mark.timeout(300)]

HANGS = "#!/bin/sh\nwhile :; do read -t 1 x <> /tmp/tick; done\n"
FLOODS = "#!/bin/sh\nwhile :; do echo " + "a" * 60 + "; done\n"


@pytest.fixture
def container(lab):
    host1 = lab["hosts"][0]
    with running_counter(lab, host1, "exec", at_least=1) as name:
        yield host1, target_for(enroll(host1)), name


def replace_cat(lab_host: dict, name: str, script: str, tmp_path: Path) -> None:
    """The container's own `cat` swapped for a script: what a hostile container can do."""
    local = tmp_path / "cat"
    local.write_text(script)
    lxc(lab_host, "exec", name, "--", "rm", "/bin/cat")
    lxc(lab_host, "file", "push", str(local), f"{name}/bin/cat", "--mode", "0755")


def exec_operations_running(lab_host: dict) -> list[dict]:
    groups = json.loads(lxc(lab_host, "query", "/1.0/operations?recursion=1"))
    return [op for op in groups.get("running") or [] if op["description"] == "Executing command"]


def left_running(lab_host: dict, name: str) -> list[str]:
    return [line for line in lxc(lab_host, "exec", name, "--", "ps").splitlines()
            if "/bin/cat" in line]  # fmt: skip


def test_mountinfo_is_read_whole_through_the_websockets(container):
    lab_host, target, name = container
    read = lxd.container_mountinfo(target, name, 1024 * 1024)
    assert not read.truncated
    assert read.text == lxc(lab_host, "exec", name, "--", "cat", "/proc/self/mountinfo")
    assert lxd.container_init_state(target, name).startswith("S")


def test_a_cat_that_never_ends_is_killed_at_the_timeout(container, tmp_path):
    lab_host, target, name = container
    replace_cat(lab_host, name, HANGS, tmp_path)
    started = time.monotonic()
    with pytest.raises(lxd.LXDError, match=r"did not finish in 3 s: the panel killed it\."):
        lxd.read_in_container(target, name, "/proc/self/mountinfo", 1024, timeout=3)
    print(f"gave up and killed it after {time.monotonic() - started:.1f} s")
    assert left_running(lab_host, name) == []
    assert exec_operations_running(lab_host) == []


def test_a_cat_that_floods_is_capped_while_read_and_killed(container, tmp_path):
    lab_host, target, name = container
    replace_cat(lab_host, name, FLOODS, tmp_path)
    read = lxd.read_in_container(target, name, "/proc/self/mountinfo", 64 * 1024, timeout=30)
    assert read.truncated and len(read.text.encode()) == 64 * 1024
    assert set(read.text) <= {"a", "\n"}
    assert left_running(lab_host, name) == []
    assert exec_operations_running(lab_host) == []
    # Nothing was recorded onto the host's disk (record-output is off).
    assert not (Path(lab_host["lxd_dir"]).parent / "log" / name / "exec-output").exists()
