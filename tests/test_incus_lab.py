"""Incus hosts managed exactly as LXD hosts: the lab's real Incus 6.0.4 (incus1, incus2),
through the web client with a real worker and the hosts' agents (PANEL_AGENT_LAYOUT=incus).

What differs is data (panel/lxd/platforms.py): a token is the only way to enroll, CRIU needs
migration.stateful=true on the container (the panel sets it), the agent reads
/var/log/incus, and the pages and bundles say Incus."""

from __future__ import annotations

import json
import time

import pytest
from django.utils.html import escape

from panel import lxd
from panel.hosts.agents import probe
from panel.hosts.identity import client_cert_files
from panel.models import Host, Instance, Operation
from tests.conftest import wait_for
from tests.lab_tools import (
    enroll,
    lab_trust_token,
    lxc,
    read_boot_id,
    read_counter,
    running_counter,
    set_criu,
    untrust_certificate,
)
from tests.test_bundles_lab import check_manifest_accounts_for_everything, download, ready
from tests.test_hosts_lab import start_adding
from tests.test_operations_lab import operate, refreshed

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def incus1(incus_lab) -> dict:
    return incus_lab[0]


@pytest.fixture
def counter(lab, incus1):
    """A running counter container on incus1, without migration.stateful (as `incus launch`
    leaves it), known to the panel; deleted afterwards."""
    with running_counter(lab, incus1, "inc", pool="bt") as name:
        host = enroll(incus1)
        yield Instance.objects.get(host=host, name=name)


@pytest.fixture
def untrusted_on_incus(incus_lab):
    cert_path, _ = client_cert_files()
    for lab_host in incus_lab:
        untrust_certificate(lab_host, cert_path)
    yield
    for lab_host in incus_lab:
        untrust_certificate(lab_host, cert_path)


def test_an_incus_host_is_added_with_a_token_only_and_reports_incus_facts_and_capabilities(
    lab, incus1, incus_agents, celery_worker, admin_client, untrusted_on_incus
):
    host = start_adding(admin_client, incus1)
    page = admin_client.get(f"/hosts/{host.pk}/enroll/").content.decode()
    assert "<strong>Incus</strong> server" in page and "Trust token" in page
    assert "tokens are the only way" in page and "incus config trust add lxd-panel" in page

    refused = admin_client.post(
        f"/hosts/{host.pk}/enroll/confirm/",
        {"fingerprint": host.offered_fingerprint, "secret": "a-trust-password"},
    )
    assert refused.status_code == 400
    assert "This is not a trust token. Incus has no trust passwords" in refused.content.decode()

    token = lab_trust_token(incus1)
    admin_client.post(
        f"/hosts/{host.pk}/enroll/confirm/",
        {"fingerprint": host.offered_fingerprint, "secret": token},
    )
    host = wait_for(
        lambda: Host.objects.filter(pk=host.pk, status=Host.Status.ONLINE).first(),
        timeout=60,
        what="the Incus host to be trusted and synced",
    )
    assert host.platform is lxd.INCUS and host.server_version.startswith("6.0.")
    assert host.facts["kernel_features"]["idmapped_mounts"] == "false"  # the lab disables them
    probe([host])
    host.refresh_from_db()
    stateful = host.capability("stateful_snapshot")
    print(f"{host.name}: {stateful.state}: {stateful.reason}")
    assert stateful.state == "yes" and "`criu check` passes" in stateful.reason
    assert f"Incus {host.server_version}" in stateful.reason
    assert "migration.stateful=true on the container" in stateful.reason
    listing = admin_client.get("/hosts/").content.decode()
    assert f"Incus {host.server_version}" in listing
    detail = admin_client.get(f"/hosts/{host.pk}/").content.decode()
    assert f"Incus {host.server_version}" in detail


def test_stateful_snapshot_restore_and_stateful_stop_start_on_incus_continue_the_counter(
    celery_worker, admin_client, counter, incus1
):
    boot = read_boot_id(incus1, counter.name)
    before = read_counter(incus1, counter.name)
    operation = operate(admin_client, counter, "stateful_snapshot", snapshot="cp")
    after = read_counter(incus1, counter.name)
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert "Set migration.stateful=true on" in "\n".join(e.message for e in operation.events.all())
    assert lxc(incus1, "config", "get", counter.name, "migration.stateful").strip() == "true"
    assert refreshed(counter).snapshots.get(name="cp").stateful

    later = wait_for(lambda: (n := read_counter(incus1, counter.name)) >= after + 3 and n,
                     timeout=30, what="the counter to move on")  # fmt: skip
    operation = operate(admin_client, counter, "restore", snapshot="cp", restore_mode="stateful")
    restored = read_counter(incus1, counter.name)
    print(f"checkpoint between {before} and {after}, later {later}, after restore {restored}")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert before <= restored <= after + 2 and restored < later
    assert read_boot_id(incus1, counter.name) == boot

    operation = operate(admin_client, refreshed(counter), "stateful_stop")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    stopped_at = read_counter(incus1, counter.name)
    time.sleep(2)
    operation = operate(admin_client, refreshed(counter), "start")
    resumed = read_counter(incus1, counter.name)
    print(f"counter at stateful stop {stopped_at}, after start {resumed}")
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert "restored from its saved state" in operation.outcome
    assert stopped_at <= resumed <= stopped_at + 2
    assert read_boot_id(incus1, counter.name) == boot
    page = admin_client.get(f"/containers/{counter.pk}/?tab=logs").content.decode()
    assert "Fetch from Incus" in page


def test_a_scheduled_stateful_snapshot_runs_on_incus(celery_worker, counter):
    from django.db import transaction
    from django.utils import timezone

    from panel.models import SnapshotSchedule
    from panel.operations.schedules import run_due_schedules

    schedule = SnapshotSchedule.objects.create(
        instance=counter, every_minutes=60, keep=1, next_run_at=timezone.now()
    )
    with transaction.atomic():
        assert run_due_schedules() == 1
    schedule.refresh_from_db()
    operation = wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE)
        .filter(pk=schedule.last_operation_id).first(),
        timeout=120, what="the scheduled snapshot",
    )  # fmt: skip
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    snapshots = refreshed(counter).snapshots.all()
    assert len(snapshots) == 1 and snapshots[0].stateful and snapshots[0].name.startswith("auto-")


def test_a_failed_checkpoint_on_incus_gets_a_bundle_in_incus_words(
    lab, incus1, incus_agents, celery_worker, admin_client, counter
):
    set_criu(incus1, "stock")
    operation = operate(admin_client, counter, "stateful_snapshot", snapshot="doomed")
    assert operation.status == Operation.Status.FAILED
    assert "still running" in operation.outcome
    bundle = ready({"operation": operation})
    members = download(admin_client, bundle)
    by_name = check_manifest_accounts_for_everything(members)
    report = members["report.md"].decode()
    print(report[:1500])
    host, c = incus1["name"], counter.name
    assert report.startswith(f"# Incus bug report: {c}")
    assert f"incus snapshot create {c} doomed --stateful" in report
    assert f"| {host} | Incus 6.0." in report
    assert json.loads(members["manifest.json"])["folder"].startswith("incus-bundle-")
    for item in ("incus-info.yaml", f"{c}/incus-info.yaml", f"{c}/config-expanded.yaml",
                 "dmesg.txt", "criu-check.txt", "incusd.log"):  # fmt: skip
        assert by_name[f"{host}/{item}"]["status"] == "collected", item
    assert by_name[f"{host}/incusd.log"]["source"].endswith("/var/log/incus/incusd.log")
    assert f"{host}/lxd-bridge" not in by_name  # LXD 2.x's file means nothing on Incus
    assert by_name[f"{host}/{c}/incus-info.yaml"]["source"] == f"Incus API: incus info {c}"
    assert any(name.startswith(f"{host}/var-log-incus/{c}/") for name in by_name)
    assert "Error" in members[next(n for n in members if "snapshot_dump_" in n)].decode()
    assert escape("Incus bug report") in admin_client.get(f"/bundles/{bundle.pk}/").content.decode()
