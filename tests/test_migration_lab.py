"""Migration between the lab's two real hosts, through the web client with a real worker."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest
from django.conf import settings
from django.utils import timezone
from django.utils.html import escape

from panel.hosts.agents import probe
from panel.hosts.inventory import sync
from panel.models import Host, Instance, Operation
from panel.operations.reconciler import lxd_still_working, reconcile
from tests.conftest import doomed_worker, wait_for
from tests.lab_tools import (
    instance_status,
    kill_stuck_dumps,
    lifecycle_actions,
    lxc,
    read_boot_id,
    read_counter,
    running_counter,
    set_criu,
)

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


@pytest.fixture
def counter(lab, fleet):
    """A running counter container on host1, known to the panel; removed from both hosts."""
    with running_counter(lab, lab["hosts"][0], "mig") as name:
        sync(fleet[0])
        yield Instance.objects.get(host=fleet[0], name=name)


def finished(pk: int) -> Operation:
    return wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first(),
        timeout=300,
        what=f"operation #{pk}",
    )


def check_then_migrate(client, instance: Instance, target: Host, **fields) -> Operation:
    """What a user does: ask for the checks, read them, confirm."""
    form = {"target": target.pk, "strategy": "auto", **fields}
    response = client.post(f"/containers/{instance.pk}/migrate/check/", form)
    assert response.status_code == 302 and "/operations/" in response["Location"], response
    preflight = finished(int(response["Location"].split("/")[2]))
    page = client.get(f"/operations/{preflight.pk}/").content.decode()
    assert "Pre-flight" in page and "The name" in page
    response = client.post(f"/containers/{instance.pk}/migrate/", form)
    assert "/operations/" in response["Location"], client.get(f"/containers/{instance.pk}/")
    return finished(int(response["Location"].split("/")[2]))


def moved(lab_host: dict, operation: Operation, name: str, host: Host) -> Instance:
    sync(host)
    return Instance.objects.get(host=host, name=name)


def test_a_live_migration_there_and_back_keeps_the_counter_and_measures_downtime(
    lab, fleet, celery_worker, admin_client, counter
):
    (h1, h2), name = fleet, counter.name
    boot = read_boot_id(lab["hosts"][0], name)
    instance = counter
    for source, target, lab_target in ((h1, h2, lab["hosts"][1]), (h2, h1, lab["hosts"][0])):
        lab_source = lab["hosts"][0] if source == h1 else lab["hosts"][1]
        before = read_counter(lab_source, name)
        with lifecycle_actions(lab_source, name) as actions:
            operation = check_then_migrate(admin_client, instance, target, strategy="live")
        assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
        # LXD copied the filesystem first without freezing the container (allow_inconsistent):
        # the only freeze was CRIU's, which LXD does not announce as a pause.
        assert "instance-paused" not in actions and "instance-shutdown" in actions, actions
        after = read_counter(lab_target, name)
        frozen = operation.result["criu_frozen_seconds"]
        print(
            f"{source.name} -> {target.name} live: counter {before} -> {after}, downtime "
            f"{operation.downtime_seconds} s, CRIU frozen {frozen} s, total "
            f"{operation.result['total_seconds']} s"
        )
        assert after >= before and read_boot_id(lab_target, name) == boot
        assert instance_status(lab_target, name) == "Running"
        assert instance_status(lab["hosts"][0] if source == h1 else lab["hosts"][1], name) is None
        observed = operation.result["observed_downtime_seconds"]
        assert operation.downtime_seconds == frozen and operation.result["downtime_source"]
        # The panel's own observation agrees with CRIU's log (0.0-0.6 % in the benchmarks).
        assert observed and abs(observed - frozen) <= 0.02 * frozen + 0.2, (observed, frozen)
        page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
        assert "from CRIU&#x27;s dump log" in page and "observed from LXD's states" in page
        # LXD usually keeps the stopped source copy busy for about 0.5 s after a move
        # (lxcfs's post-stop hook, lab/README.md); the timeline shows that wait apart from the
        # delete. On a slow run LXD had let go before the panel's delete, with no wait to show.
        phases = {phase["name"]: phase for phase in operation.result["phases"]}
        held = phases.get("clean up: LXD still stopping the source")
        if held:
            assert 0.2 < held["duration"] < 5 and phases["clean up: delete"]["duration"] < 1
            assert "LXD was still stopping the source copy for " in page
        else:
            assert "clean up" in phases, list(phases)
        instance = moved(lab_target, operation, name, target)
        assert instance.status == "Running"
        sync(source)
        assert Instance.objects.get(host=source, name=name).gone_at is not None


def test_the_recommended_checkpoint_move_restore_keeps_the_counter(
    lab, fleet, celery_worker, admin_client, counter
):
    boot = read_boot_id(lab["hosts"][0], counter.name)
    before = read_counter(lab["hosts"][0], counter.name)
    operation = check_then_migrate(admin_client, counter, fleet[1])
    print(f"checkpoint-move-restore: {operation.outcome} phases {operation.result['phases']}")
    assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
    assert operation.params["strategy"] == "stateful_move"
    # On the lab's dir pools a live migration waits out LXD's final rsync pass: see
    # tests/test_migration_pools_lab.py for both pool drivers.
    assert "dir is an rsync-type pool" in operation.params["strategy_reason"]
    assert read_counter(lab["hosts"][1], counter.name) >= before
    assert read_boot_id(lab["hosts"][1], counter.name) == boot
    assert instance_status(lab["hosts"][0], counter.name) is None
    assert 0 < operation.downtime_seconds < operation.result["total_seconds"]


def test_a_cold_migration_restarts_the_processes_on_the_target(
    lab, fleet, celery_worker, admin_client, counter
):
    boot = read_boot_id(lab["hosts"][0], counter.name)
    operation = check_then_migrate(admin_client, counter, fleet[1], strategy="cold")
    assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
    assert instance_status(lab["hosts"][1], counter.name) == "Running"
    assert read_boot_id(lab["hosts"][1], counter.name) != boot  # a fresh boot, as promised


def test_a_restore_failure_on_the_target_leaves_the_source_running(
    lab, fleet, celery_worker, admin_client, counter
):
    set_criu(lab["hosts"][1], "stock")
    operation = check_then_migrate(admin_client, counter, fleet[1], strategy="live")
    print(f"outcome: {operation.outcome}\nerror: {operation.error[:400]}")
    assert operation.status == Operation.Status.FAILED
    assert f"Migration failed on {fleet[1].name}" in operation.outcome
    assert instance_status(lab["hosts"][0], counter.name) is not None  # one copy, on the source
    assert f"on {fleet[0].name}" in operation.container_state_after
    assert instance_status(lab["hosts"][1], counter.name) is None  # no half-made copy left
    stuck = kill_stuck_dumps(counter.name)  # the truth, seen from the host itself
    if stuck:  # LXD 5.0.2 left the dump waiting and no agent could free it: the page says how
        assert "held by a stuck CRIU dump" in operation.container_state_after
        assert "kill -TERM $(pgrep -f 'migratedumpsuccess /1.0/operations/" in operation.outcome
    else:  # no dump was left, or the host's agent freed it
        assert "still running on" in operation.outcome
    print(f"stuck dump processes found and killed afterwards: {stuck}")


def test_refusals_same_host_name_taken_unreachable_target_and_failed_preflight(
    lab, fleet, celery_worker, admin_client, counter
):
    h1, h2 = fleet
    url = f"/containers/{counter.pk}/migrate/check/"
    same = admin_client.post(url, {"target": h1.pk, "strategy": "auto"}, follow=True)
    assert "Select a valid choice" in same.content.decode()

    lxc(lab["hosts"][1], "init", lab["image_alias"], counter.name)
    sync(h2)
    taken = admin_client.post(url, {"target": h2.pk, "strategy": "auto"}, follow=True)
    assert escape(f"already has a container named {counter.name!r}") in taken.content.decode()
    lxc(lab["hosts"][1], "delete", "--force", counter.name)
    sync(h2)

    Host.objects.filter(pk=h2.pk).update(status=Host.Status.UNREACHABLE, last_error="gone away")
    away = admin_client.post(url, {"target": h2.pk, "strategy": "auto"}, follow=True)
    assert "is unreachable: gone away" in away.content.decode()
    sync(Host.objects.get(pk=h2.pk))

    form = {"target": h2.pk, "strategy": "auto", "pool": "nosuchpool"}
    response = admin_client.post(url, form)
    preflight = finished(int(response["Location"].split("/")[2]))
    assert "1 of" in preflight.outcome and "Storage pool 'nosuchpool'" in preflight.outcome
    page = admin_client.get(f"/operations/{preflight.pk}/").content.decode()
    assert "blocked by: Storage pool" in page  # the confirm step says what blocks each strategy
    response = admin_client.post(f"/containers/{counter.pk}/migrate/", form)
    operation = finished(int(response["Location"].split("/")[2]))
    assert operation.status == Operation.Status.FAILED
    assert operation.outcome.startswith("Pre-flight failed, nothing was changed")
    assert instance_status(lab["hosts"][0], counter.name) == "Running"


def test_the_hosts_agents_refine_the_preflight(
    lab, fleet, lab_agents, celery_worker, admin_client, counter
):
    """With an agent on each host, CPU flags and `criu check` are known, and so is the lab
    kernel's missing memory dirty tracking, which rules out LXD's incremental pre-copy."""
    probe(list(fleet))
    form = {"target": fleet[1].pk, "strategy": "auto"}
    response = admin_client.post(f"/containers/{counter.pk}/migrate/check/", form)
    preflight = finished(int(response["Location"].split("/")[2]))
    checks = {check["key"]: check for check in preflight.result["checks"]}
    print({key: check["status"] for key, check in checks.items()})
    assert checks["cpu_flags"]["status"] == "pass"
    assert checks["source_criu"]["status"] == checks["target_criu"]["status"] == "pass"
    memory = checks["incremental_memory"]
    assert memory["status"] == "warn" and "dirty tracking is off" in memory["reason"]


def test_a_worker_killed_during_a_live_migration_is_reconciled_with_the_truth(
    lab, fleet, celery_worker, admin_client, counter
):
    """SIGKILL the worker (its whole process group) while the container is being migrated:
    LXD finishes alone; the reconciler must end the operation saying where the container
    is, and the copy left behind must be removable with one click."""
    boot = read_boot_id(lab["hosts"][0], counter.name)
    with doomed_worker("doomed") as doomed:
        response = admin_client.post(
            f"/containers/{counter.pk}/migrate/", {"target": fleet[1].pk, "strategy": "live"}
        )
        pk = int(response["Location"].split("/")[2])
        wait_for(
            lambda: len(Operation.objects.get(pk=pk).lxd_operation_ids) >= 2,
            timeout=60,
            what="both LXD operations to start",
        )
        time.sleep(2)  # the container is frozen now, in the middle of the migration
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
    operation = Operation.objects.get(pk=pk)
    assert operation.status == Operation.Status.RUNNING  # nobody ended it: the worker is dead
    wait_for(lambda: not lxd_still_working(operation), timeout=120, what="LXD to finish alone")
    silence = timezone.now() + dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS + 1)
    started = time.monotonic()
    assert reconcile(now=silence) == [pk]
    operation.refresh_from_db()
    print(f"reconciled in {time.monotonic() - started:.2f} s: {operation.outcome}")
    assert operation.status == Operation.Status.INTERRUPTED
    assert f"The container is on {fleet[1].name} (RUNNING)" in operation.outcome
    assert instance_status(lab["hosts"][1], counter.name) == "Running"  # the truth, from LXD
    assert read_boot_id(lab["hosts"][1], counter.name) == boot
    if instance_status(lab["hosts"][0], counter.name) is not None:
        assert "left behind" in operation.outcome
        sync(fleet[0])
        cleanup = admin_client.post(f"/operations/{pk}/remove-left-copy/")
        removal = finished(int(cleanup["Location"].split("/")[2]))
        assert removal.status == Operation.Status.SUCCEEDED, removal.outcome
        assert instance_status(lab["hosts"][0], counter.name) is None
