"""How the agent finds a live migration's stuck CRIU dump (workers/dumps.py): the exact
`lxd migratedumpsuccess` under the container's dump, by its place in the process tree, on
this host only. The process tree is written out as a /proc of its own (pure logic); the lab
test that frees a real stuck dump is tests/test_fault_matrix_lab.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers import dumps

CRIU = ("/lab/criu-prefix/lib/ld-linux-x86-64.so.2", "--library-path", "/lab/lib",
        "/lab/criu-prefix/usr/sbin/criu", "dump", "--tcp-established", "-D",
        "/tmp/lxd_checkpoint_1/final", "--action-script", "/tmp/lxd_checkpoint_1/action.sh",
        "-t", "300", "--freeze-cgroup", "/sys/fs/cgroup/freezer//lxc.payload.c1")  # fmt: skip
SCRIPT = ("/bin/sh", "-e", "/tmp/lxd_checkpoint_1/action.sh")
WAITER = ("/usr/bin/lxd", "migratedumpsuccess", "/1.0/operations/abc-123", "s3cret")


class FakeProc:
    """A /proc with the processes a test asks for (stat, cmdline, cgroup, mount namespace)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "self" / "ns").mkdir(parents=True)
        (root / "self" / "ns" / "mnt").write_text("this host")
        (root / "other-mnt").write_text("another host")
        (root / "uptime").write_text("1000.00 900.00\n")

    def add(self, pid: int, ppid: int, argv: tuple[str, ...], cgroup: str = "/",
            elsewhere: bool = False, started: int = 50_000) -> None:  # fmt: skip
        folder = self.root / str(pid)
        (folder / "ns").mkdir(parents=True)
        (folder / "stat").write_text(
            f"{pid} (some name) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {started} 0 0\n"
        )
        (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (folder / "cgroup").write_text(f"12:freezer:{cgroup}\n0::{cgroup}\n")
        (folder / "status").write_text("Name:\tx\nState:\tt (tracing stop)\n")
        source = self.root / ("other-mnt" if elsewhere else "self/ns/mnt")
        os.link(source, folder / "ns" / "mnt")


@pytest.fixture
def proc(tmp_path) -> FakeProc:
    fake = FakeProc(tmp_path)
    fake.add(300, 290, ("/sbin/init",), cgroup="/lxc.payload.c1")
    fake.add(400, 1, CRIU)
    fake.add(401, 400, SCRIPT)
    fake.add(402, 401, WAITER, started=60_000)
    return fake


def test_it_finds_the_waiting_process_under_the_containers_dump(proc):
    [hold] = dumps.find_holds("c1", proc.root)
    assert (hold.criu_pid, hold.init_pid, hold.script_pid, hold.waiter_pid) == (400, 300, 401, 402)
    assert hold.waiter_operation == "/1.0/operations/abc-123"
    assert hold.waiting_seconds == pytest.approx(1000 - 60_000 / os.sysconf("SC_CLK_TCK"))


def test_it_ignores_another_containers_dump_and_a_dump_on_another_host(proc):
    assert dumps.find_holds("c10", proc.root) == []  # lxc.payload.c10 is not lxc.payload.c1
    proc.add(500, 290, ("/sbin/init",), cgroup="/lxc.payload.c2")
    proc.add(600, 1, (*CRIU[:-4], "-t", "500"), elsewhere=True)
    assert dumps.find_holds("c2", proc.root) == []


def test_a_process_that_only_looks_like_the_waiter_is_not_taken(proc):
    """`lxd migratedumpsuccess` anywhere else in the tree (another parent) is not the one."""
    proc.add(700, 1, WAITER)
    [hold] = dumps.find_holds("c1", proc.root)
    assert hold.waiter_pid == 402


def test_a_dump_still_dumping_has_no_waiter_and_is_not_ended(proc, monkeypatch):
    for pid in (401, 402):
        (proc.root / str(pid) / "stat").unlink()
        (proc.root / str(pid) / "cmdline").unlink()
    monkeypatch.setattr(os, "kill", lambda *args: pytest.fail("nothing may be signalled"))
    report = dumps.end_holds("c1", "resume", proc.root)
    assert report["holds"][0]["waiter_pid"] is None
    [action] = report["actions"]
    assert action["ended"] is None and "still dumping" in action["why"]


def test_resume_signals_only_the_waiter_and_stop_only_criu(proc, monkeypatch):
    signalled = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signalled.append((pid, sig.name)))
    monkeypatch.setattr(dumps, "EXIT_WAIT_SECONDS", 0.2)
    dumps.end_holds("c1", "resume", proc.root)
    dumps.end_holds("c1", "stop", proc.root)
    assert signalled == [(402, "SIGTERM"), (400, "SIGKILL")]


def test_an_unknown_action_is_refused():
    assert dumps.end_holds("c1", "rm -rf /")["refused"].startswith("unknown action")
