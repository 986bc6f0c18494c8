"""Real progress: each kind's known phases as a stepper, the fraction of them behind an
operation, and LXD's transfer figures read from its progress text."""

from __future__ import annotations

import pytest

from panel.accounts.tokens import issue_token
from panel.lxd import Transfer
from panel.models import Host, Instance, Operation
from panel.operations import lifecycle
from panel.operations.phases import fraction, phases_of, steps
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def operation(kind: str, **fields) -> Operation:
    host = Host.objects.first() or make_host()
    instance = make_instance(host, f"c{Instance.objects.count()}")
    return lifecycle.request(instance, kind, None, **fields)


@pytest.mark.parametrize(
    ("text", "moved", "rate", "percent"),
    [
        ("c1: 120.00MB (15.00MB/s)", 120_000_000, 15_000_000, None),
        ("Unpack: 45% (3.20GB/s)", None, 3_200_000_000, 45.0),
        ("c1: 1.50GiB", 1_610_612_736, None, None),
        ("a: 1.00MB (1.00MB/s); b: 512B (1.00kB/s)", 512, 1000, None),
        ("frozen: checkpointing and restoring", None, None, None),
        ("", None, None, None),
    ],
)
def test_lxds_progress_text_gives_bytes_rate_and_percent(text, moved, rate, percent):
    assert Transfer.parse(text) == Transfer(moved, rate, percent)


def test_a_live_migration_goes_through_check_transfer_verify_and_clean_up():
    migration = operation("migrate", params={"strategy": "live"})
    assert phases_of(migration) == ["checking", "transferring", "verifying", "cleaning up"]
    assert fraction(migration, "transferring") == 0.25
    assert fraction(migration, "transferring", within=0.5) == 0.375
    assert fraction(migration, "waiting for host") is None


def test_a_checkpoint_move_restore_names_every_phase_and_keeping_the_source_skips_clean_up():
    move = operation("migrate", params={"strategy": "stateful_move", "keep_source": True})
    assert [step.label for step in steps(move, frozenset())] == [
        "check", "checkpoint", "transfer", "restore", "verify",
    ]  # fmt: skip


def test_a_start_from_saved_state_is_a_restore_and_a_scheduled_snapshot_prunes():
    start = operation("start")
    assert phases_of(start, frozenset({"restoring"}))[0] == "restoring"
    scheduled = operation("stateful_snapshot", params={"snapshot": "auto-1", "keep": 3})
    assert phases_of(scheduled) == ["checkpointing", "verifying", "pruning"]


def test_the_stepper_marks_done_current_and_where_a_failure_stopped():
    restore = operation("restore", params={"snapshot": "s", "stateful": True})
    restore.stage = "restoring"
    assert [s.state for s in steps(restore, frozenset())] == ["current", "upcoming"]
    restore.status, restore.stage = Operation.Status.FAILED, "failed"
    assert [s.state for s in steps(restore, frozenset({"restoring"}))] == ["failed", "skipped"]
    restore.status = Operation.Status.SUCCEEDED
    assert [s.state for s in steps(restore, frozenset({"restoring"}))] == ["done", "done"]


def test_entering_a_phase_sets_the_fraction_the_page_and_the_api_show(admin_client, admin_user):
    restore = operation("restore", params={"snapshot": "s", "stateful": True})
    assert lifecycle.claim(restore.pk).verdict == lifecycle.CLAIMED
    restore.refresh_from_db()
    from panel.operations.runner import Tracker

    Tracker(restore).enter("verifying", "Checking.")
    assert Operation.objects.get(pk=restore.pk).progress_fraction == 0.5
    lifecycle.record_progress(restore, "c1: 10.00MB (2.00MB/s)", fraction=0.5)
    page = admin_client.get(f"/operations/{restore.pk}/progress/").content.decode()
    assert 'value="0.500"' in page and "50 %" in page
    assert "Transferred:</strong> 10.0 MB at <strong>2.0 MB/s" in page
    assert '<li class="step-done">' in page and 'aria-current="step"' in page
    token = issue_token(admin_user, "progress")[1]
    api = admin_client.get(
        f"/api/operations/{restore.pk}/", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert api["progress_fraction"] == 0.5 and api["phases"] == ["restoring", "verifying"]
    assert api["transfer"] == {"bytes": 10_000_000, "bytes_per_second": 2_000_000, "percent": None}
    assert [step["state"] for step in api["steps"]] == ["done", "current"]
