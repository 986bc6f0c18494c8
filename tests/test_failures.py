"""The grouping rule (panel/failures/fingerprint.py, docs/failures.md) on the real failure texts
the lab produced (tests/fixtures/failures/, README there says how), and its normalisations
one by one. Pure: no database."""

from __future__ import annotations

import json

import pytest

from panel.failures import fingerprint
from panel.failures.fingerprint import normalise, phase_of
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "failures"
VDSO = "Error (criu/vdso.c): vdso: Unexpected rt vDSO area bounds"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def signature_of(name: str) -> fingerprint.Signature:
    found = fixture(name)
    versions = " -> ".join(f"{h['server']} {h['server_version']}" for h in found["hosts"])
    return fingerprint.signature(
        kind=found["kind"],
        stages=found["stages"],
        error=found["error"],
        outcome=found["outcome"],
        versions=versions,
        names=found["names"],
    )


def test_the_stock_criu_dump_failure_on_two_hosts_has_one_fingerprint():
    host1, host2 = signature_of("dump-host1"), signature_of("dump-host2")
    assert fixture("dump-host1")["error"] != fixture("dump-host2")["error"]  # times, log names
    assert host1 == host2 and host1.fingerprint == host2.fingerprint
    assert host1.as_dict() == {
        "kind": "stateful_snapshot",
        "phase": "checkpointing",
        "criu": VDSO,
        "platform": "snapshot dump failed",
        "versions": "lxd 5.0.2",
        "criu_version": "3.17.1",
    }


def test_a_stateful_stop_with_the_same_cause_is_one_group_of_its_own():
    """host2's text even quotes an older CRIU log below LXD's lines: the first error wins."""
    host1, host2 = signature_of("stateful-stop-host1"), signature_of("stateful-stop-host2")
    assert host1.fingerprint == host2.fingerprint != signature_of("dump-host1").fingerprint
    assert (host1.kind, host1.phase, host1.criu) == ("stateful_stop", "checkpointing", VDSO)


def test_the_restore_failure_is_another_group_with_its_own_phase():
    restore = signature_of("restore-host1")
    assert restore.fingerprint != signature_of("dump-host1").fingerprint
    assert (restore.phase, restore.platform, restore.criu) == (
        "restoring",
        "snapshot restore failed",
        VDSO,
    )
    assert restore.criu_version == "3.17.1"


def test_the_migration_restore_failure_is_a_transfer_failure_between_two_platforms():
    migration = signature_of("migrate-live-host1-host2")
    assert migration.phase == "transferring"  # the freeze noted as "checkpointing" is part of it
    assert migration.platform == "Error transferring instance data: migration restore failed"
    assert migration.criu == VDSO and migration.versions == "lxd 5.0.2 -> lxd 5.0.2"


def test_the_panels_own_failure_kinds_are_told_by_their_first_sentence_or_lxds_error():
    unreachable = signature_of("lxd-unreachable")
    assert unreachable.criu == unreachable.criu_version == ""
    assert unreachable.platform == (
        "Cannot connect to <url>: HTTPSConnectionPool(host='<address>', port=<n>): Max "
        'retries exceeded with url: <path> (Caused by NewConnectionError("HTTPSConnection('
        "host='<address>', port=<n>): Failed to establish a new connection: [Errno <n>] "
        'Connection refused"))'
    )
    preflight = signature_of("preflight-pool-missing")
    assert preflight.platform.startswith("Pre-flight failed, nothing was changed: Storage pool "
                                         "'<name>' exists on <name>")  # fmt: skip
    assert preflight.phase == "starting"
    never = signature_of("never-started")
    assert never.phase == "queued"
    assert never.platform.startswith("No worker started this operation, even after")


def test_every_real_failure_of_another_cause_has_another_fingerprint():
    names = [p.stem for p in FIXTURES.glob("*.json")]
    assert len(names) >= 9
    by_print: dict[str, set[str]] = {}
    for name in names:
        by_print.setdefault(signature_of(name).fingerprint, set()).add(name.rsplit("-host", 1)[0])
    assert all(len(causes) == 1 for causes in by_print.values()), by_print
    assert len(by_print) == len({name.rsplit("-host", 1)[0] for name in names})


def test_the_fixtures_hold_no_path_of_the_machine_that_made_them():
    for path in FIXTURES.glob("*.json"):
        assert "/work/" not in path.read_text(), path.name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(00.040996) Error (criu/vdso.c:381): vdso: x", "Error (criu/vdso.c:<n>): vdso: x"),
        ("Can't open /var/lib/lxd/containers/c1/rootfs/tmp/tick: Permission denied",
         "Can't open <path>: Permission denied"),
        ("zombie 4711 (comm sh) found while seizing", "zombie <n> (comm sh) found while seizing"),
        ("mnt: No mapping for 232:(null) mountpoint", "mnt: No mapping for <n>:(null) mountpoint"),
        ("operation 0f8c1f47-6bd4-4a35-9cb3-7a1d6f0e9a11 failed", "operation <uuid> failed"),
        ("dial tcp 10.77.0.12:8443: connect: refused", "dial tcp <address>: connect: refused"),
        ("dial tcp [fd42::1]:8443: i/o timeout", "dial tcp <address>: i/o timeout"),
        ("object at 0x7f52a01edef0 gone", "object at <hex> gone"),
        ("fingerprint 5b2a9c0e77d1f3a8 differs", "fingerprint <hex> differs"),
        ("at 2026-12-01T11:34:43Z it broke", "at <time> it broke"),
        ("cgroup lxc.payload.web-1 of web-1 busy", "cgroup lxc.payload.<name> of <name> busy"),
        ("x86_64 mnt-v2 ext4 v3", "x86_64 mnt-v2 ext4 v3"),  # words with digits stay
        ("many\n\n   spaces\tand\x00nul", "many spaces andnul"),
    ],
)  # fmt: skip
def test_normalisation_replaces_what_differs_between_instances(text, expected):
    assert normalise(text, names=["web-1", "c1"]) == expected


def test_a_name_is_replaced_only_as_a_whole_word_and_the_text_is_capped():
    assert normalise("c1 c10 my-c1 c1.", names=["c1"]) == "<name> c10 my-c1 <name>."
    assert len(normalise("word " * 200)) == fingerprint.MAX_PART


def test_the_first_criu_error_wins_without_its_line_number():
    text = "(00.1) Error (criu/a.c:10): first\n(00.2) pie: 1: Error (criu/b.c:20): second"
    assert fingerprint.first_criu_error(text) == "Error (criu/a.c): first"
    assert fingerprint.first_criu_error("Error: no file and line here") == ""
    assert fingerprint.criu_version("(00.000087) Version: 3.17.1 (gitid 0)") == "3.17.1"
    assert fingerprint.criu_version("Version: 4.1.1") == "4.1.1"


@pytest.mark.parametrize(
    ("stages", "phase"),
    [
        (["queued", "starting", "checkpointing", "diagnosing", "checkpointing"], "checkpointing"),
        (["queued", "starting", "transferring", "checkpointing", "reconciling"], "transferring"),
        (["starting", "checkpointing", "transferring", "restoring", "reconciling"], "restoring"),
        (["queued", "starting", "restoring", "verifying"], "verifying"),
        (["queued", "starting", "starting"], "starting"),
        (["queued", "reconciling"], "queued"),
    ],
)
def test_the_phase_is_the_last_stage_of_the_work_itself(stages, phase):
    assert phase_of(stages) == phase


def test_a_criu_failure_without_a_version_line_takes_the_hosts_or_says_unknown():
    error = "snapshot dump failed\n(00.1) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO"
    found = fingerprint.signature("stateful_snapshot", [], error, "", "lxd 5.0.2")
    assert found.criu_version == "unknown"
    agent = fingerprint.signature(
        "stateful_snapshot", [], error, "", "lxd 5.0.2", [], "Version: 4.1"
    )
    assert agent.criu_version == "4.1" and agent.fingerprint != found.fingerprint
    plain = fingerprint.signature("stop", [], "Instance is busy", "", "lxd 5.0.2", [], "4.1")
    assert plain.criu_version == ""  # CRIU said nothing: its version is not part of the cause
