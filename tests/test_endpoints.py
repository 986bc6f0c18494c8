"""Which host endpoints an administrator may add (panel/hosts/endpoints.py): the lab's private
addresses and the known sockets, never the panel machine's own services in disguise."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from panel.accounts.tokens import issue_token
from panel.models import Host

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [
        ("https://127.0.0.1:6379", "loopback"),
        ("https://127.0.0.2", "loopback"),
        ("https://[::1]:8443", "loopback"),
        ("https://localhost:8443", "loopback"),
        ("https://panel.localhost", "loopback"),
        ("https://[::ffff:127.0.0.1]:8443", "carries 127.0.0.1"),
        ("https://[64:ff9b::7f00:1]", "carries 127.0.0.1"),
        ("https://169.254.169.254", "metadata"),
        ("https://[fd00:ec2::254]", "metadata"),
        ("https://100.100.100.200", "metadata"),
        ("https://metadata.google.internal", "metadata"),
        ("https://169.254.10.1:8443", "link-local"),
        ("https://[fe80::1]:8443", "link-local"),
        ("https://0.0.0.0:8443", "not a host"),
        ("https://224.0.0.1", "multicast"),
        ("https://2130706433", "is a number"),
        ("https://0x7f000001", "is a number"),
        ("https://017700000001", "is a number"),
        ("https://0177.0.0.1", "is a number"),
        ("https://127.1", "is a number"),
        ("https://10.77.0.11:0", "port is not a number"),
        ("https://10.77.0.11:", "port is not a number"),
        ("https://10.77.0.11:+80", "port is not a number"),
        ("https://10.77.0.11:65536", "port is not a number"),
        ("https://@10.77.0.11", "no user"),
        ("/etc/passwd", "not an LXD or Incus socket"),
        ("/run/lxd.socket", "not an LXD or Incus socket"),
        ("/tmp/unix.socket", "PANEL_LOCAL_LXD_SOCKETS"),
    ],
)
def test_it_refuses_loopback_metadata_numeric_hosts_bad_ports_and_other_sockets(
    admin_client, endpoint, complaint
):
    response = admin_client.post("/hosts/add/", {"name": "h1", "endpoint": endpoint})
    assert response.status_code == 200
    assert complaint in response.content.decode()
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [("https://169.254.169.254", "metadata"), ("https://2130706433", "is a number"),
     ("https://127.0.0.1:6379", "loopback"), ("/etc/passwd", "not an LXD or Incus socket")],
)  # fmt: skip
def test_the_api_and_the_shell_refuse_the_same_endpoints(client, admin_user, endpoint, complaint):
    token = issue_token(admin_user, "enrol")[1]
    answer = client.post("/api/hosts/enroll/", json.dumps({"name": "h1", "endpoint": endpoint}),
                         content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 400 and complaint in json.dumps(answer.json()["errors"])
    with pytest.raises(CommandError, match=complaint):
        call_command("panel", "host-add", admin_user.username, "h1", endpoint,
                     stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    ("endpoint", "stored"),
    [
        ("https://10.77.0.11", "https://10.77.0.11:8443"),  # the lab
        ("https://172.16.4.2:8443", "https://172.16.4.2:8443"),
        ("https://192.168.1.20:443", "https://192.168.1.20:443"),
        ("https://[fd12:3456::1]", "https://[fd12:3456::1]:8443"),
        ("https://lxd1.example.org:8443", "https://lxd1.example.org:8443"),
        ("/var/lib/incus/unix.socket", "/var/lib/incus/unix.socket"),
    ],
)
def test_private_addresses_names_and_known_sockets_are_accepted(admin_client, endpoint, stored):
    admin_client.post("/hosts/add/", {"name": "h1", "endpoint": endpoint})
    assert Host.objects.get().endpoint == stored


def test_an_administrator_setting_allows_loopback_and_another_socket(admin_client, settings):
    settings.ALLOWED_HOST_NETWORKS = ["127.0.0.0/8"]
    settings.LOCAL_LXD_SOCKETS = ["/srv/lxd/unix.socket"]
    admin_client.post("/hosts/add/", {"name": "h1", "endpoint": "https://127.0.0.1:8443"})
    admin_client.post("/hosts/add/", {"name": "h2", "endpoint": "/srv/lxd/unix.socket"})
    assert sorted(Host.objects.values_list("endpoint", flat=True)) == [
        "/srv/lxd/unix.socket",
        "https://127.0.0.1:8443",
    ]
    response = admin_client.post("/hosts/add/", {"name": "h3", "endpoint": "https://[::1]"})
    assert "loopback" in response.content.decode()


def test_a_bad_allowed_network_stops_the_start_naming_the_variable():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"DJANGO_SETTINGS_MODULE": "panel.settings", "PATH": "/usr/bin:/bin",
             "PANEL_ALLOWED_HOST_NETWORKS": "127.0.0.1,not-a-network"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PANEL_ALLOWED_HOST_NETWORKS" in result.stderr and "not-a-network" in result.stderr


def test_the_admin_can_neither_add_a_host_nor_change_its_endpoint(admin_client):
    host = Host.objects.create(name="h1", endpoint="https://10.0.0.1:8443")
    assert admin_client.get("/admin/panel/host/add/").status_code == 403
    page = admin_client.get(f"/admin/panel/host/{host.pk}/change/").content.decode()
    assert "https://10.0.0.1:8443" in page and 'name="endpoint"' not in page
