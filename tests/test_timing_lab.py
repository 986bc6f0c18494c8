"""Bad timing from users (issue 15, point 7), with real migrations. A cancel at each phase:
during the re-check it changes nothing; after the checkpoint or while the checkpointed
container moves it puts the container back home from its saved state; while CRIU holds it
(live) or the target restores it, it is refused in words and the migration finishes saying
the cancel came too late. A second migration bringing the same name to a host that is
receiving it is refused naming the first. (Double submit and two tabs:
tests/test_reconciler.py; a cancel while queued: tests/test_lifecycle.py.)"""

from __future__ import annotations

import pytest

from panel.hosts.inventory import sync
from panel.models import Instance, Operation
from panel.operations import lifecycle, migration
from panel.operations.lifecycle import LATE_CANCEL
from panel.operations.tasks import run_migration_operation
from tests.conftest import session_worker_paused
from tests.fault_tools import wait_for_stage
from tests.lab_tools import instance_status, lxc, read_boot_id, running_counter
from tests.test_fault_matrix_lab import ended, migrate, running_copies, synced

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


# How a cancel at a phase may end: nothing changed, the container back home from its saved
# state (the target's copy removed), or the migration finished saying the cancel came too late.
UNCHANGED, HOME, TOO_LATE = "unchanged", "home", "too late"


@pytest.mark.parametrize(
    ("strategy", "stage", "ending"),
    [
        ("stateful_move", "checkpointing", HOME),
        ("stateful_move", "transferring", HOME),
        ("live", "checkpointing", TOO_LATE),  # CRIU holds the container: no way back
        ("stateful_move", "restoring", TOO_LATE),  # the target starts the moved copy
    ],
)
def test_a_cancel_at_each_phase_of_a_migration_ends_truthfully(
    lab, fleet, celery_worker, admin_client, strategy, stage, ending
):
    (lab1, lab2), (h1, h2) = lab["hosts"][:2], fleet
    with running_counter(lab, lab1, f"cancel-{strategy[:4]}-{stage[:5]}") as name:
        instance, boot = synced(lab1, h1, name)
        pk = migrate(admin_client, instance, h2, strategy)
        assert wait_for_stage(pk, (stage,)) == stage
        admin_client.post(f"/operations/{pk}/cancel/")
        operation = ended(pk)
        print(f"\n{operation.status}: {operation.outcome}")
        assert ending_of(operation) == ending, operation.outcome
        home, away = (lab2, lab1) if ending == TOO_LATE else (lab1, lab2)
        assert running_copies(lab, name) == [home["name"]] and read_boot_id(home, name) == boot
        assert instance_status(away, name) is None
        if ending == TOO_LATE and strategy == "live":
            assert "Cancel requested, but CRIU holds the container now" in " ".join(
                operation.events.values_list("message", flat=True)
            )


def test_a_cancel_during_the_pre_flight_re_check_changes_nothing(
    lab, fleet, celery_worker, admin_client, monkeypatch
):
    """The re-check takes milliseconds here, too short to aim a click at, so the user's
    cancel is sent from inside it: the migration runs in this process (the session worker
    takes no jobs meanwhile) against the real hosts, and the cancel lands as the re-check
    returns. The next cancel point honours it: nothing was changed."""
    (lab1, lab2), (h1, h2) = lab["hosts"][:2], fleet
    real_checks = migration.gather_checks

    def checks_then_cancel(operation, *args, **kwargs):
        gathered = real_checks(operation, *args, **kwargs)
        assert lifecycle.cancel(operation, "a user in another tab") == "requested"
        return gathered

    monkeypatch.setattr(migration, "gather_checks", checks_then_cancel)
    with running_counter(lab, lab1, "cancel-check") as name:
        instance, boot = synced(lab1, h1, name)
        with session_worker_paused():
            pk = migrate(admin_client, instance, h2, "live")
            run_migration_operation(pk)
        operation = Operation.objects.get(pk=pk)
        assert ending_of(operation) == UNCHANGED, operation.outcome
        assert running_copies(lab, name) == [lab1["name"]] and read_boot_id(lab1, name) == boot
        assert instance_status(lab2, name) is None


def ending_of(operation: Operation) -> str:
    """Which ending the operation's own words describe (each checked in full)."""
    source = operation.source_host.name
    if operation.status == Operation.Status.SUCCEEDED:
        assert operation.outcome.endswith(LATE_CANCEL), operation.outcome
        return TOO_LATE
    assert operation.status == Operation.Status.CANCELLED, operation.outcome
    if operation.container_state_after == f"on {source}, untouched":
        assert operation.outcome.startswith("Cancelled before the "), operation.outcome
        assert operation.outcome.endswith(": nothing was changed."), operation.outcome
        return UNCHANGED
    assert f"started the container again on {source} from its saved state" in operation.outcome
    assert operation.container_state_after.startswith(f"on {source}, RUNNING")
    return HOME


def test_a_second_migration_bringing_the_same_name_to_a_host_is_refused_naming_the_first(
    lab, fleet, celery_worker, admin_client
):
    (lab1, lab2), (h1, h2) = lab["hosts"][:2], fleet
    with (
        running_counter(lab, lab1, "arrive-a") as first,
        running_counter(lab, lab1, "arrive-b") as second,
    ):
        sync(h1)
        a, b = (Instance.objects.get(host=h1, name=name) for name in (first, second))
        arrival = f"{first}-moved"
        form = {"target": h2.pk, "strategy": "cold", "new_name": arrival}
        admin_client.post(f"/containers/{a.pk}/migrate/", form)
        moving = Operation.objects.get(instance=a, kind="migrate")
        page = admin_client.post(f"/containers/{b.pk}/migrate/", form, follow=True).content.decode()
        assert f"{h2.name} is already receiving or working on a container named" in page
        assert f"operation #{moving.pk} (migrate)" in page
        assert not Operation.objects.filter(instance=b).exists()
        try:
            assert ended(moving.pk).status == Operation.Status.SUCCEEDED
        finally:
            lxc(lab2, "delete", "--force", arrival, check=False)
