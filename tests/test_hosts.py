"""Adding hosts from the browser, and the fleet pages (database only, no LXD here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from panel import lxd
from panel.models import Host
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = pytest.mark.django_db


def a_certificate(tmp_path) -> str:
    cert_path, _ = lxd.ensure_client_certificate(tmp_path / "server")
    return Path(cert_path).read_text()


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [
        ("http://10.0.0.1:8443", "https"),
        ("ftp://10.0.0.1", "https"),
        ("https://user:pw@10.0.0.1:8443", "no user"),
        ("https://10.0.0.1:8443/1.0?x=1", "no user"),
        ("https://10.0.0.1:99999", "port"),
        ("https://bad_host!:8443", "not a valid host"),
        ("relative/unix.socket", "https"),
        ("/var/lib/../../etc/passwd", "socket path"),
        ("/var/lib/lxd/unix socket", "socket path"),
        ("https://" + "a" * 300 + ":8443", "at most 255"),
    ],
)
def test_it_refuses_endpoints_that_are_neither_https_nor_a_socket(
    admin_client, endpoint, complaint
):
    response = admin_client.post("/hosts/add/", {"name": "h1", "endpoint": endpoint})
    assert response.status_code == 200
    assert complaint in response.content.decode()
    assert not Host.objects.exists()


@pytest.mark.parametrize("name", ["1abc", "has space", "ends-", "a" * 64, "<script>", "x_y"])
def test_it_refuses_names_outside_lxd_rules(admin_client, name):
    response = admin_client.post("/hosts/add/", {"name": name, "endpoint": "https://h:8443"})
    assert b"Use 1 to 63 letters" in response.content or b"at most 63" in response.content
    assert b"<script>" not in response.content
    assert not Host.objects.exists()


def test_it_refuses_a_duplicate_name_or_endpoint(admin_client):
    make_host("h1", endpoint="https://10.0.0.1:8443")
    response = admin_client.post("/hosts/add/", {"name": "H1", "endpoint": "https://10.0.0.2"})
    assert b"already the name of a host" in response.content
    response = admin_client.post("/hosts/add/", {"name": "h2", "endpoint": "https://10.0.0.1"})
    assert b"already registered as" in response.content
    assert Host.objects.count() == 1


def test_an_https_host_starts_enrolling_and_is_not_in_the_fleet_yet(admin_client):
    response = admin_client.post("/hosts/add/", {"name": "h1", "endpoint": "https://10.0.0.1"})
    host = Host.objects.get()
    assert response["Location"] == f"/hosts/{host.pk}/enroll/"
    assert host.endpoint == "https://10.0.0.1:8443"
    assert host.status == Host.Status.ENROLLING
    assert host.enrollment == Host.Enrollment.FETCHING_CERTIFICATE
    dashboard = admin_client.get("/").content
    assert b"No hosts yet" in dashboard
    assert b"10.0.0.1" not in dashboard


def test_a_socket_host_joins_the_fleet_directly(admin_client):
    response = admin_client.post(
        "/hosts/add/", {"name": "local", "endpoint": "/var/lib/lxd/unix.socket"}
    )
    host = Host.objects.get()
    assert response["Location"] == f"/hosts/{host.pk}/"
    assert host.status == Host.Status.UNKNOWN


def test_confirming_pins_the_shown_certificate_and_never_stores_the_secret(admin_client, tmp_path):
    pem = a_certificate(tmp_path)
    host = make_host(
        "h1",
        status=Host.Status.ENROLLING,
        enrollment=Host.Enrollment.AWAITING_CONFIRMATION,
        offered_certificate=pem,
    )
    page = admin_client.get(f"/hosts/{host.pk}/enroll/")
    assert host.offered_fingerprint.encode() in page.content

    admin_client.post(
        f"/hosts/{host.pk}/enroll/confirm/",
        {"fingerprint": host.offered_fingerprint, "secret": "planted-secret-42"},
    )
    host.refresh_from_db()
    assert host.server_certificate == pem
    assert host.enrollment == Host.Enrollment.TRUSTING
    stored = repr(list(Host.objects.values()))
    assert "planted-secret-42" not in stored


def test_a_certificate_that_changed_after_it_was_shown_is_not_pinned(admin_client, tmp_path):
    host = make_host(
        "h1",
        status=Host.Status.ENROLLING,
        enrollment=Host.Enrollment.AWAITING_CONFIRMATION,
        offered_certificate=a_certificate(tmp_path),
    )
    response = admin_client.post(
        f"/hosts/{host.pk}/enroll/confirm/", {"fingerprint": "0" * 64, "secret": "pw"}
    )
    assert response.status_code == 400
    assert b"changed since it was shown" in response.content
    host.refresh_from_db()
    assert host.server_certificate == ""
    assert host.enrollment == Host.Enrollment.AWAITING_CONFIRMATION


def test_a_failed_enrollment_says_why_and_can_be_cancelled_leaving_nothing(admin_client):
    host = make_host("h1", status=Host.Status.ENROLLING, enrollment=Host.Enrollment.FAILED,
                     last_error="https://h1.example:8443 refused the trust password")  # fmt: skip
    page = admin_client.get(f"/hosts/{host.pk}/enroll/")
    assert b"refused the trust password" in page.content
    assert b"Nothing was added to the fleet" in page.content
    admin_client.post(f"/hosts/{host.pk}/remove/")
    assert not Host.objects.exists()


def test_viewers_cannot_add_or_remove_hosts(viewer_client):
    host = make_host("h1")
    assert viewer_client.get("/hosts/add/").status_code == 403
    assert (
        viewer_client.post("/hosts/add/", {"name": "h2", "endpoint": "/x.socket"}).status_code
        == 403
    )
    assert viewer_client.post(f"/hosts/{host.pk}/remove/").status_code == 403
    assert Host.objects.count() == 1


def test_the_host_page_shows_facts_and_capabilities_with_reasons(viewer_client):
    facts = {"server": "lxd", "server_version": "5.0.2", "driver": "lxc",
             "kernel_version": "6.18.44", "cpu_model": "AMD EPYC", "cpu_flags": None,
             "storage_pools": ["default"], "profiles": ["default"], "networks": ["lo"],
             "system_type": "container"}  # fmt: skip
    host = make_host("h1", facts=facts)
    page = viewer_client.get(f"/hosts/{host.pk}/").content.decode()
    for text in ["6.18.44", "AMD EPYC", "Stateful snapshots: unknown", "no agent",
                 "inside a container", "not reported by this LXD"]:  # fmt: skip
        assert text in page


def test_the_container_list_filters_by_host_state_and_name(viewer_client):
    h1, h2 = make_host("h1"), make_host("h2")
    make_instance(h1, "web1")
    make_instance(h1, "db1", status="Stopped")
    make_instance(h2, "web2")
    gone = make_instance(h2, "old")
    gone.gone_at = gone.synced_at
    gone.save()

    def names(query: str) -> list[str]:
        page = viewer_client.get(f"/containers/?{query}").context["page"]
        return sorted(instance.name for instance in page.object_list)

    assert names("") == ["db1", "web1", "web2"]
    assert names("host=h1") == ["db1", "web1"]
    assert names("state=Stopped") == ["db1"]
    assert names("q=WEB") == ["web1", "web2"]
    assert names("host=h2&state=Running&q=web") == ["web2"]


def test_the_container_list_costs_the_same_queries_for_ten_or_three_hundred(
    viewer_client, django_assert_max_num_queries
):
    host = make_host("h1")
    for number in range(10):
        make_instance(host, f"c{number}")
    with django_assert_max_num_queries(8) as few:  # with the task bar's two counts
        viewer_client.get("/containers/")
    for number in range(10, 300):
        make_instance(host, f"c{number}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        viewer_client.get("/containers/?page=3")


def test_the_container_page_shows_lxc_info_snapshots_and_config_inert(viewer_client):
    host = make_host("h1")
    instance = make_instance(
        host, "c1", expanded_config={"user.note": "<script>alert('x')</script>"}
    )
    make_snapshot(instance, "second", stateful=True)
    url = f"/containers/{instance.pk}/"
    page = "".join(
        viewer_client.get(f"{url}?tab={tab}").content.decode()
        for tab in ("overview", "snapshots", "config")
    )
    for text in ["RUNNING", "PID", "TAKEN AT", "EXPIRES AT", "STATEFUL", "second", "user.note"]:
        assert text in page
    assert "<script>alert('x')</script>" not in page
    assert "&lt;script&gt;" in page


def test_a_log_file_renders_inert(viewer_client):
    instance = make_instance(make_host("h1"), "c1")
    log = instance.logs.create(filename="lxc.log", content="<img src=x onerror=alert(1)>")
    page = viewer_client.get(f"/containers/{instance.pk}/logs/{log.pk}/").content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_log_of_another_container_is_not_found_through_this_one(viewer_client):
    host = make_host("h1")
    mine, other = make_instance(host, "mine"), make_instance(host, "other")
    log = other.logs.create(filename="lxc.log", content="secret")
    assert viewer_client.get(f"/containers/{mine.pk}/logs/{log.pk}/").status_code == 404


def test_the_container_polls_read_only_what_their_fragments_show(
    viewer_client, django_assert_max_num_queries
):
    instance = make_instance(make_host("h1"), "c1")
    make_snapshot(instance, "s1", stateful=True)
    url, htmx = f"/containers/{instance.pk}/", {"HX-Request": "true"}
    with django_assert_max_num_queries(5):  # session, user, instance+host, role
        info = viewer_client.get(url + "?tab=overview", headers=htmx).content
    assert b'id="instance-info"' in info and b"<form" not in info
    assert b"Migrate to another host" not in info
    with django_assert_max_num_queries(6):  # the same, and the snapshots
        snapshots = viewer_client.get(url + "?tab=snapshots", headers=htmx).content
    assert b'id="snapshots"' in snapshots and b"s1" in snapshots
    assert b"data-pause-while-used" in snapshots  # panel.js holds it while it is used


def test_each_section_of_the_container_page_is_a_tab_the_url_remembers(viewer_client):
    instance = make_instance(make_host("h1"), "c1")
    make_snapshot(instance, "s1", stateful=True)
    url = f"/containers/{instance.pk}/"
    for tab, shows in [
        ("overview", "lxc info c1"),
        ("snapshots", "Scheduled stateful snapshots"),
        ("operations", "Bug-report bundles"),
        ("logs", "No log files fetched yet"),
        ("config", "lxc config show --expanded c1"),
    ]:
        page = viewer_client.get(f"{url}?tab={tab}").content.decode()
        assert f'<a href="?tab={tab}" aria-current="page">' in page
        assert shows in page
    assert "lxc info c1" in viewer_client.get(url + "?tab=<script>").content.decode()
