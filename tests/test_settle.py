"""The decisions behind "every failure ends truthfully", without LXD: where a migration that
went wrong leaves the container (settle.home_of), what the page says when no agent can free
a stuck dump, and the requests refused because of bad timing. The real faults are
tests/test_fault_matrix_lab.py."""

from __future__ import annotations

import pytest
from django.utils import timezone

from panel.models import Host
from panel.operations import lifecycle, stuck
from panel.operations.aftercare import copy_left, left_by
from panel.operations.peers import Seen
from panel.operations.runner import OperationLost, Tracker
from panel.operations.settle import HOME_SOURCE, HOME_TARGET, UNDECIDED, home_of
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


def seen(status: str | None, answered: bool = True) -> Seen:
    summary = None if status is None else {"status": status, "stateful": False}
    return Seen("h2", "c1", answered, summary)


@pytest.mark.parametrize(
    ("target", "seen_running", "stage", "strategy", "home"),
    [
        (seen("Running"), False, "transferring", "live", HOME_TARGET),
        (seen("Stopped"), False, "restoring", "stateful_move", HOME_SOURCE),
        (seen(None), True, "restoring", "live", HOME_SOURCE),  # it answers: no copy there
        (seen(None, answered=False), True, "verifying", "live", HOME_TARGET),
        (seen(None, answered=False), False, "checkpointing", "live", HOME_SOURCE),
        (seen(None, answered=False), False, "transferring", "stateful_move", HOME_SOURCE),
        (seen(None, answered=False), False, "restoring", "stateful_move", UNDECIDED),
        (seen(None, answered=False), False, "starting", "cold", UNDECIDED),
    ],
)
def test_the_home_is_the_copy_that_runs_else_the_source_unless_the_target_may_be_starting(
    target, seen_running, stage, strategy, home
):
    assert home_of(target, seen_running, stage, strategy) == home


def claimed_tracker() -> Tracker:
    host = make_host("h1")  # no certificate fingerprint known: no agent can be asked
    operation = lifecycle.request(make_instance(host), "migrate", None, {"strategy": "live"},
                                  target_host=make_host("h2"), target_name="c1")  # fmt: skip
    assert lifecycle.claim(operation.pk).verdict == lifecycle.CLAIMED
    operation.refresh_from_db()
    return Tracker(operation)


def test_without_an_agent_the_outcome_names_the_stuck_dump_and_the_one_command_that_frees_it():
    released = stuck.release(claimed_tracker(), "c1", "resume", ["1b90-4e"])
    assert not released.freed
    assert "LXD operation 1b90-4e waits for a migration that cannot finish" in released.words
    assert (
        "On h1, as root: `kill -TERM $(pgrep -f 'migratedumpsuccess /1.0/operations/1b90-4e ')`"
        in (released.words)
    )


def test_a_worker_that_lost_its_operation_never_asks_an_agent_to_end_a_process():
    tracker = claimed_tracker()
    lifecycle.end_by_reconciler(tracker.operation, "interrupted", "Reconciled.", "?")
    with pytest.raises(OperationLost):
        stuck.release(tracker, "c1", "resume", ["1b90-4e"])


def test_a_second_migration_bringing_the_same_name_to_a_host_is_refused_naming_the_first():
    h1, h2 = make_host("h1"), make_host("h2")
    first = lifecycle.request(make_instance(h1, "c1"), "migrate", None, {},
                              target_host=h2, target_name="web")  # fmt: skip
    with pytest.raises(lifecycle.Busy, match=f"h2 is already receiving .* named 'web': "
                       f"operation #{first.pk} \\(migrate\\)"):  # fmt: skip
        lifecycle.request(make_instance(make_host("h3"), "web"), "migrate", None, {},
                          target_host=h2, target_name="web")  # fmt: skip
    other = lifecycle.request(make_instance(make_host("h4"), "db"), "migrate", None, {},
                              target_host=h2, target_name="db")  # fmt: skip
    assert other.pk != first.pk  # another name may arrive at the same time (host slots apply)


def ended_migration(state_after: str, status: str = "failed", name: str = "web"):
    h1, h2 = (Host.objects.filter(name=n).first() or make_host(n) for n in ("h1", "h2"))
    original, copy = make_instance(h1, name), make_instance(h2, name, status="Stopped")
    operation = lifecycle.Operation.objects.create(
        kind="migrate", instance=original, instance_name=name, target_name=name,
        source_host=h1, target_host=h2, status=status, container_state_after=state_after,
    )  # fmt: skip
    return operation, original, copy


def test_the_copy_left_is_the_one_where_the_container_does_not_live():
    operation, _, copy = ended_migration("on h1, RUNNING")
    assert copy_left(operation) == copy and left_by(copy) is None  # not finished: no date
    operation.finished_at = timezone.now()
    operation.save(update_fields=["finished_at"])
    assert left_by(copy) == operation
    moved, original, _ = ended_migration("on h2, RUNNING", status="succeeded", name="db")
    assert copy_left(moved) == original


def test_no_copy_is_offered_for_removal_while_undecided_or_once_a_later_operation_took_it():
    undecided, _, _ = ended_migration(
        "on h1, STOPPED with saved state (a copy on h2 may have started)"
    )
    assert copy_left(undecided) is None
    operation, _, copy = ended_migration("on h1, RUNNING", name="db")
    lifecycle.request(copy, "delete_copy", None)
    assert copy_left(operation) is None


def test_the_copy_left_is_labelled_on_its_page_and_removed_with_one_click(admin_client):
    operation, _, copy = ended_migration("on h1, RUNNING")
    operation.finished_at = timezone.now()
    operation.save(update_fields=["finished_at"])
    page = admin_client.get(f"/containers/{copy.pk}/").content.decode()
    assert f'This is a copy left by <a href="/operations/{operation.pk}/">migration' in page
    assert "the container lives on h1, RUNNING" in page
    detail = admin_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "Remove the copy left on h2" in detail
    response = admin_client.post(f"/operations/{operation.pk}/remove-left-copy/")
    removal = lifecycle.Operation.objects.get(kind="delete_copy")
    assert response["Location"] == f"/operations/{removal.pk}/"
    assert removal.instance == copy and removal.params["stop_first"]


def test_a_migration_or_a_copy_removal_is_never_asked_through_the_container_buttons(admin_client):
    instance = make_instance(make_host("h1"))
    for kind in ("migrate", "preflight", "delete_copy"):
        response = admin_client.post(f"/containers/{instance.pk}/operations/", {"kind": kind},
                                     follow=True)  # fmt: skip
        assert "are asked for on their own pages" in response.content.decode()
    assert not lifecycle.Operation.objects.exists()
