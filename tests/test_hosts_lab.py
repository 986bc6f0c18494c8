"""Adding the lab's real LXD hosts through the web client, with a real worker."""

from __future__ import annotations

import pytest

from panel.hosts.identity import client_cert_files
from panel.models import Host, Instance
from tests.conftest import wait_for
from tests.lab_tools import (
    instance_status,
    launch_counter,
    lxc,
    new_trust_token,
    server_fingerprint,
    unique_name,
    untrust_certificate,
)

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def start_adding(client, lab_host: dict) -> Host:
    """Submit the add form and wait for the worker to fetch the certificate."""
    response = client.post("/hosts/add/", {"name": lab_host["name"], "endpoint": lab_host["url"]})
    assert response.status_code == 302, response.content
    return wait_for(
        lambda: Host.objects.filter(
            name=lab_host["name"], enrollment=Host.Enrollment.AWAITING_CONFIRMATION
        ).first(),
        timeout=30,
        what="the certificate to be fetched",
    )


def confirm(client, host: Host, secret: str) -> Host:
    page = client.get(f"/hosts/{host.pk}/enroll/").content.decode()
    assert host.offered_fingerprint in page
    client.post(
        f"/hosts/{host.pk}/enroll/confirm/",
        {"fingerprint": host.offered_fingerprint, "secret": secret},
    )
    return wait_for(
        lambda: (
            Host.objects.filter(pk=host.pk)
            .exclude(enrollment=Host.Enrollment.TRUSTING)
            .exclude(status=Host.Status.UNKNOWN)
            .first()
        ),
        timeout=60,
        what="the trust step to finish",
    )


def test_both_lab_hosts_are_added_confirmed_synced_and_show_the_counter_container(
    lab, celery_worker, admin_client, untrusted_panel
):
    name = unique_name("counter")
    launch_counter(lab, lab["hosts"][0], name)
    lxc(lab["hosts"][0], "snapshot", name, "first")
    try:
        for lab_host in lab["hosts"][:2]:
            host = start_adding(admin_client, lab_host)
            assert host.offered_fingerprint == server_fingerprint(lab_host)
            host = confirm(admin_client, host, lab_host["trust_password"])
            assert host.status == Host.Status.ONLINE, host.last_error
            assert host.fingerprint == server_fingerprint(lab_host)
            print(f"{host.name}: LXD {host.server_version}, {host.facts['cpu_model']}")
            assert "default" in host.facts["storage_pools"]  # the lab adds a btrfs "bt" too

        instance = wait_for(
            lambda: Instance.objects.filter(host__name=lab["hosts"][0]["name"], name=name).first(),
            timeout=30,
            what="the counter container in the inventory",
        )
        assert instance.status == instance_status(lab["hosts"][0], name) == "Running"
        assert instance.state["pid"] > 0
        listing = admin_client.get(f"/containers/?q={name}").content.decode()
        assert name in listing
        detail = admin_client.get(f"/containers/{instance.pk}/").content.decode()
        assert "RUNNING" in detail
        snapshots = admin_client.get(f"/containers/{instance.pk}/?tab=snapshots").content
        assert b"TAKEN AT" in snapshots
        snapshot = instance.snapshots.get()
        assert (snapshot.name, snapshot.stateful) == ("first", False)

        lxc(lab["hosts"][0], "delete", "--force", name)
        admin_client.post(f"/hosts/{instance.host.pk}/sync/")
        gone = wait_for(
            lambda: Instance.objects.filter(pk=instance.pk, gone_at__isnull=False).first(),
            timeout=30,
            what="the deleted container to be marked gone",
        )
        assert gone.status == "Running"  # its last known state is kept as history
    finally:
        lxc(lab["hosts"][0], "delete", "--force", name, check=False)


def test_a_wrong_trust_password_is_refused_and_nothing_joins_the_fleet(
    lab, celery_worker, admin_client, untrusted_panel
):
    host = confirm(admin_client, start_adding(admin_client, lab["hosts"][0]), "not-the-password")
    assert host.enrollment == Host.Enrollment.FAILED
    assert "refused the trust password" in host.last_error
    assert host.status == Host.Status.ENROLLING
    assert not Host.objects.enrolled().exists()
    assert (
        b"Nothing was added to the fleet" in admin_client.get(f"/hosts/{host.pk}/enroll/").content
    )


def test_a_trust_token_from_lxc_config_trust_add_works_once(
    lab, celery_worker, admin_client, untrusted_panel
):
    token = new_trust_token(lab["hosts"][1])
    host = confirm(admin_client, start_adding(admin_client, lab["hosts"][1]), token)
    assert host.status == Host.Status.ONLINE, host.last_error

    host.delete()
    untrust_certificate(lab["hosts"][1], client_cert_files()[0])
    again = confirm(admin_client, start_adding(admin_client, lab["hosts"][1]), token)
    assert again.enrollment == Host.Enrollment.FAILED
    assert "refused the token" in again.last_error


def test_a_token_issued_by_another_server_is_refused_as_possible_interception(
    lab, celery_worker, admin_client, untrusted_panel
):
    token_of_host2 = new_trust_token(lab["hosts"][1])
    host = confirm(admin_client, start_adding(admin_client, lab["hosts"][0]), token_of_host2)
    assert host.enrollment == Host.Enrollment.FAILED
    assert "may be intercepted" in host.last_error
