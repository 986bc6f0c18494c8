"""The container list shows what `lxc list` shows (state, IPv4, snapshots, saved state)
and sorts by each column, both ways."""

from __future__ import annotations

import re

import pytest

from panel import lxd
from tests.helpers import make_host, make_instance, make_snapshot

pytestmark = pytest.mark.django_db


def names_in(page: str) -> list[str]:
    return re.findall(r'<td><a href="/containers/\d+/">([^<]+)</a></td>', page)


def test_ipv4_is_what_lxc_list_shows_global_addresses_with_their_nic():
    network = {
        "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
        "eth0": {
            "addresses": [
                {"family": "inet", "address": "10.0.3.5", "scope": "global"},
                {"family": "inet6", "address": "fd42::5", "scope": "global"},
            ]
        },
    }
    assert lxd.ipv4_addresses(network) == "10.0.3.5 (eth0)"
    assert lxd.ipv4_addresses({}) == ""


def test_the_list_shows_and_sorts_by_every_lxc_list_column(viewer_client):
    host = make_host()
    make_instance(host, "a-run", ipv4="10.0.0.9 (eth0)")
    saved = make_instance(host, "b-saved", status="Stopped", stateful=True)
    snapped = make_instance(host, "c-snaps", ipv4="10.0.0.1 (eth0)")
    make_snapshot(snapped, "s1"), make_snapshot(snapped, "s2"), make_snapshot(saved, "s1")
    page = viewer_client.get("/containers/").content.decode()
    for header in ("STATE", "IPV4", "SNAPSHOTS", "SAVED STATE"):
        assert f">{header}</a>" in page or f">{header} ▲</a>" in page
    assert "10.0.0.9 (eth0)" in page and "<td>2</td>" in page
    assert names_in(page) == ["a-run", "b-saved", "c-snaps"]
    for sort, expected in [
        ("-name", ["c-snaps", "b-saved", "a-run"]),
        ("state", ["a-run", "c-snaps", "b-saved"]),
        ("-snapshots", ["c-snaps", "b-saved", "a-run"]),
        ("-saved", ["b-saved", "a-run", "c-snaps"]),
        ("ipv4", ["b-saved", "c-snaps", "a-run"]),
        ("nonsense", ["a-run", "b-saved", "c-snaps"]),
    ]:
        sorted_page = viewer_client.get("/containers/", {"sort": sort}).content.decode()
        assert names_in(sorted_page) == expected, sort


def test_a_sorted_list_keeps_its_filters_in_the_column_links(viewer_client):
    make_instance(make_host(), "web1")
    page = viewer_client.get("/containers/", {"q": "web", "sort": "-state"}).content.decode()
    assert 'href="?q=web&amp;sort=state"' in page  # clicking again turns it around
    assert 'aria-sort="descending"' in page
