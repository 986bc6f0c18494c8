"""Migrations on the lab's Incus hosts, and between LXD and Incus, through the web client with
a real worker. Figures are printed (`-s`); docs/platforms.md has the table they make.

- incus1 <-> incus2: live, checkpoint-move-restore and cold, there and back, on btrfs: the
  counter continues (cold: restarts), downtime measured, the target verified by init's PID.
- LXD <-> Incus: CRIU strategies are refused before anything changes (why: docs/platforms.md;
  the finding itself, run by hand: tests/findings_cross_platform_live_lab.py);
  a running container moves cold, as a translated backup with its config and snapshots.
"""

from __future__ import annotations

import json

import pytest
from django.utils.html import escape

from panel.hosts.inventory import sync
from panel.models import Instance, Operation
from tests.lab_tools import (
    instance_status,
    lxc,
    read_boot_id,
    read_counter,
    running_counter,
)
from tests.test_migration_lab import check_then_migrate, finished

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def there_and_back(client, lab_hosts, hosts, name, strategy):
    """Migrate `name` from the first host to the second and back with `strategy`; yield,
    per leg, (operation, counter before, counter after, boot id before, boot id after)."""
    for (lab_source, lab_target), (source, target) in (
        ((lab_hosts[0], lab_hosts[1]), (hosts[0], hosts[1])),
        ((lab_hosts[1], lab_hosts[0]), (hosts[1], hosts[0])),
    ):
        sync(source)
        instance = Instance.objects.get(host=source, name=name, gone_at__isnull=True)
        before, boot = read_counter(lab_source, name), read_boot_id(lab_source, name)
        operation = check_then_migrate(client, instance, target, strategy=strategy)
        assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
        assert instance_status(lab_source, name) is None
        assert instance_status(lab_target, name) == "Running"
        after, boot_after = read_counter(lab_target, name), read_boot_id(lab_target, name)
        evidence = operation.result["target_processes"]
        assert evidence["pid"] > 0 and evidence["processes"] > 0, evidence
        print(
            f"{source.name} -> {target.name} {strategy}: counter {before} -> {after}, downtime "
            f"{operation.downtime_seconds} s, total {operation.result['total_seconds']} s, "
            f"target {evidence}"
        )
        yield operation, before, after, boot, boot_after
        sync(target)


@pytest.mark.parametrize("strategy", ["live", "stateful_move"])
def test_incus_criu_migrations_there_and_back_keep_the_counter_and_measure_downtime(
    lab, incus_lab, incus_fleet, celery_worker, admin_client, strategy
):
    with running_counter(lab, incus_lab[0], "imig", pool="bt") as name:
        for operation, before, after, boot, boot_after in there_and_back(
            admin_client, incus_lab, incus_fleet, name, strategy
        ):
            assert after >= before and boot_after == boot, "the processes restarted"
            assert operation.params["strategy"] == strategy
            assert 0 < operation.downtime_seconds < operation.result["total_seconds"]
            page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
            assert "runs on" in page and "init PID" in page


def test_an_incus_cold_migration_there_and_back_restarts_the_processes(
    lab, incus_lab, incus_fleet, celery_worker, admin_client
):
    with running_counter(lab, incus_lab[0], "icold", pool="bt") as name:
        for operation, _, _, boot, boot_after in there_and_back(
            admin_client, incus_lab, incus_fleet, name, "cold"
        ):
            assert boot_after != boot  # a fresh boot, as promised
            assert 0 < operation.downtime_seconds < operation.result["total_seconds"]


def config_of(lab_host: dict, name: str) -> dict:
    return json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}"))["config"]


def snapshots_of(lab_host: dict, name: str) -> dict[str, bool]:
    listing = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}/snapshots?recursion=1"))
    return {snapshot["name"]: snapshot["stateful"] for snapshot in listing}


def test_lxd_to_incus_and_back_moves_a_running_container_cold_with_its_config_and_snapshots(
    lab, incus_lab, fleet, incus_fleet, celery_worker, admin_client
):
    host1, incus1 = lab["hosts"][0], incus_lab[0]
    with running_counter(lab, host1, "cross") as name:
        lxc(host1, "config", "set", name, "security.devlxd=false", "user.note=kept")
        lxc(host1, "snapshot", name, "plain")
        lxc(host1, "snapshot", name, "checkpoint", "--stateful")
        sync(fleet[0])
        instance = Instance.objects.get(host=fleet[0], name=name)
        before, boot = read_counter(host1, name), read_boot_id(host1, name)

        # A CRIU strategy is refused before anything changes, saying why.
        refused = admin_client.post(
            f"/containers/{instance.pk}/migrate/",
            {"target": incus_fleet[0].pk, "strategy": "live"},
            follow=True,
        ).content.decode()
        assert "Not started: A CRIU checkpoint made by LXD holds LXD&#x27;s own mounts" in refused
        assert instance_status(host1, name) == "Running"

        # The pre-flight says, before the user confirms, that it will be stopped and why.
        response = admin_client.post(
            f"/containers/{instance.pk}/migrate/check/",
            {"target": incus_fleet[0].pk, "strategy": "auto"},
        )
        preflight = finished(int(response["Location"].split("/")[2]))
        checks = {check["key"]: check for check in preflight.result["checks"]}
        assert checks["platforms"]["status"] == "fail"
        assert checks["platforms"]["blocks"] == ["live", "stateful_move"]
        assert "security.devlxd becomes security.guestapi" in checks["config_translation"]["reason"]
        page = admin_client.get(f"/operations/{preflight.pk}/").content.decode()
        assert "Stop, move, start: A CRIU checkpoint made by LXD" in page
        assert escape("its processes restart") in page

        operation = check_then_migrate(admin_client, instance, incus_fleet[0])
        print(f"LXD -> Incus: {operation.outcome} {operation.result.get('translation')}")
        assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
        assert operation.params["strategy"] == "cold"
        assert instance_status(host1, name) is None and instance_status(incus1, name) == "Running"
        config = config_of(incus1, name)
        assert (config["security.guestapi"], config["user.note"]) == ("false", "kept")
        assert "security.devlxd" not in config
        assert snapshots_of(incus1, name) == {"plain": False, "checkpoint": False}
        assert "snapshot checkpoint (now a filesystem snapshot)" in operation.result["translation"]
        assert read_counter(incus1, name) >= before  # the data came along
        assert read_boot_id(incus1, name) != boot  # cold: a fresh boot, as the pre-flight said
        assert operation.result["target_processes"]["pid"] > 0
        first = operation

        # Back to LXD: Incus's own keys stay behind, the renamed one gets LXD's name again.
        lxc(incus1, "config", "set", name, "migration.stateful=true")
        sync(incus_fleet[0])
        instance = Instance.objects.get(host=incus_fleet[0], name=name)
        operation = check_then_migrate(admin_client, instance, fleet[0])
        print(f"Incus -> LXD: {operation.outcome} {operation.result.get('translation')}")
        assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
        assert instance_status(incus1, name) is None and instance_status(host1, name) == "Running"
        config = config_of(host1, name)
        assert (config["security.devlxd"], config["user.note"]) == ("false", "kept")
        assert "migration.stateful" not in config and "volatile.uuid.generation" not in config
        assert "migration.stateful is left out" in operation.result["translation"]
        assert snapshots_of(host1, name) == {"plain": False, "checkpoint": False}
        for leg in (first, operation):
            print(
                f"{leg.source_host.name} -> {leg.target_host.name} cold: downtime "
                f"{leg.downtime_seconds} s, total {leg.result['total_seconds']} s"
            )
            assert 0 < leg.downtime_seconds < leg.result["total_seconds"]


def test_a_stopped_container_moves_from_incus_to_lxd_and_stays_stopped(
    lab, incus_lab, fleet, incus_fleet, celery_worker, admin_client
):
    with running_counter(lab, incus_lab[1], "stopped") as name:
        lxc(incus_lab[1], "stop", name)
        sync(incus_fleet[1])
        instance = Instance.objects.get(host=incus_fleet[1], name=name)
        operation = check_then_migrate(admin_client, instance, fleet[1])
        assert operation.status == Operation.Status.SUCCEEDED, (operation.outcome, operation.error)
        print(f"Incus -> LXD stopped: total {operation.result['total_seconds']} s")
        assert operation.params["strategy"] == "stopped"
        assert instance_status(lab["hosts"][1], name) == "Stopped"
        assert instance_status(incus_lab[1], name) is None
