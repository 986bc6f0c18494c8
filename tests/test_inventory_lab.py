"""A container LXD accepts but the panel's tables could not hold as it is never blocks its
host's sync, on the lab's real LXD: a snapshot name over 63 characters (LXD 5.0.2 takes 70).
The rest is stored, and the host's page says what was not kept and why. (NUL characters:
LXD 5.0.2 cuts a config value or description at its first NUL when it stores it, so they
cannot come back from it; tests/test_unstorable_input.py stores them as another server could
report them.)"""

from __future__ import annotations

import pytest

from panel.hosts.inventory import sync
from panel.models import Instance, Snapshot
from tests.lab_tools import enroll, lxc, unique_name

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_an_odd_container_is_stored_as_far_as_it_can_be_and_the_host_page_says_the_rest(
    lab, admin_client
):
    lab_host = lab["hosts"][0]
    odd, plain = unique_name("odd"), unique_name("plain")
    long_snapshot = "s" * 70
    try:
        for name in (odd, plain):
            lxc(lab_host, "init", lab["image_alias"], name)
        lxc(lab_host, "snapshot", odd, long_snapshot)
        lxc(lab_host, "snapshot", odd, "short")
        host = enroll(lab_host)
        sync(host)
        host.refresh_from_db()
        assert host.last_sync is not None and host.status == "online", host.last_error
        stored = Instance.objects.get(host=host, name=odd)
        assert set(Snapshot.objects.filter(instance=stored).values_list("name", flat=True)) == {
            "short"
        }
        assert Instance.objects.filter(host=host, name=plain).exists()
        page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
        assert f"snapshot &#x27;{long_snapshot}&#x27; is not shown" in page
    finally:
        for name in (odd, plain):
            lxc(lab_host, "delete", "--force", name, check=False)
