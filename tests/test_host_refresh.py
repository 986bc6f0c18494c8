"""Host refresh runs in a real Celery worker and records what LXD said, or why it did not."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import struct
import threading
from pathlib import Path

import pytest
from django.db import transaction

from panel import lxd
from panel.hosts.connection import target_for
from panel.hosts.identity import client_cert_files
from panel.hosts.requests import request_sync
from panel.models import Host
from tests.conftest import wait_for
from tests.lab_tools import enroll, untrust_certificate


def refreshed(host: Host, timeout: float = 30) -> Host:
    """Queue a refresh through the broker and wait until the worker has written the outcome."""
    with transaction.atomic():
        request_sync(host)
    return wait_for(
        lambda: Host.objects.exclude(status=Host.Status.UNKNOWN).filter(pk=host.pk).first(),
        timeout=timeout,
        what=f"the worker to refresh {host.name}",
    )


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_marks_a_host_without_a_daemon_unreachable_and_says_why(celery_worker):
    host = Host.objects.create(name="nowhere", endpoint="/nonexistent/unix.socket")
    host = refreshed(host)
    assert host.status == Host.Status.UNREACHABLE
    assert "No LXD socket at /nonexistent/unix.socket" in host.last_error
    assert host.last_contact is None


def lab_host(lab: dict, index: int = 0) -> dict:
    return lab["hosts"][index]


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_offers_a_local_lxd_and_the_worker_reads_it(
    lab, celery_worker, admin_client, settings
):
    socket_path = str(Path(lab_host(lab)["lxd_dir"]) / "unix.socket")
    settings.LOCAL_LXD_SOCKETS = [socket_path]
    assert b"Add the local LXD as a host" in admin_client.get("/").content

    admin_client.post("/hosts/add-local/")
    host = wait_for(
        lambda: Host.objects.filter(endpoint=socket_path, status=Host.Status.ONLINE).first(),
        timeout=30,
        what="the local host to come online",
    )
    print(
        f"local host {host.name}: LXD {host.server_version}, kernel {host.facts['kernel_version']}"
    )
    assert host.server_version.startswith("5.")
    assert "instances" in host.facts["api_extensions"]
    assert b"Add the local LXD as a host" not in admin_client.get("/").content


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_a_host_reached_through_its_pin_but_not_trusting_the_panel_says_so(
    lab, celery_worker, untrusted_panel
):
    address = lab_host(lab)["address"]
    pem = ssl.get_server_certificate((address, 8443))
    host = Host.objects.create(name="lab1", endpoint=lab_host(lab)["url"], server_certificate=pem)
    host = refreshed(host)
    assert host.status == Host.Status.UNREACHABLE
    assert "does not trust the panel" in host.last_error
    assert host.facts["auth"] == "untrusted"  # it answered, through the pinned certificate


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_a_certificate_that_does_not_match_the_pin_is_refused_as_possible_interception(
    lab, celery_worker
):
    other_host_pem = ssl.get_server_certificate((lab_host(lab, 1)["address"], 8443))
    host = Host.objects.create(
        name="lab1", endpoint=lab_host(lab)["url"], server_certificate=other_host_pem
    )
    host = refreshed(host)
    assert host.status == Host.Status.UNREACHABLE
    assert "does not match the pinned one" in host.last_error
    assert "intercepted" in host.last_error


def test_a_host_without_a_pinned_certificate_is_never_contacted_blindly():
    with pytest.raises(lxd.LXDError, match="no pinned server certificate"):
        lxd.server_facts(lxd.Target(endpoint="https://127.0.0.1:1"))


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_facts_asked_on_a_kept_connection_are_the_server_s_answer_of_now(lab, untrusted_panel):
    """server_facts keeps its client and, next time, asks GET /1.0 again on it instead of a
    new TLS handshake. What it reports must be what LXD says now, not what it said when
    the connection was made: here the panel's trust is taken away in between."""
    host = enroll(lab_host(lab))
    target = target_for(host)
    lxd.forget_client(target)
    assert lxd.server_facts(target)["auth"] == "trusted"
    kept = lxd.reused_client(target)
    cert_path, _ = client_cert_files()
    untrust_certificate(lab_host(lab), cert_path)

    try:
        facts = lxd.server_facts(target)
        assert lxd.reused_client(target) is kept, "a new client was made: the kept one unused"
        assert facts["auth"] == "untrusted"
        assert "storage_pools" not in facts  # nothing that needs trust was claimed
    finally:
        lxd.forget_client(target)  # the next tests start on a client of their own


class CuttingProxy(threading.Thread):
    """A TCP forwarder to a lab LXD that can cut the connections it has open at the moment
    their next request arrives (as a server closing an idle connection just as the client
    reuses it), while new connections go through as before."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.generation, self.cut_below, self.cuts = 0, 0, 0

    def cut_open_connections(self) -> None:
        self.generation += 1
        self.cut_below = self.generation

    def run(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.upstream)
            born = self.generation
            for source, sink, asks in ((downstream, upstream, True), (upstream, downstream, False)):
                threading.Thread(
                    target=self.pipe, args=(source, sink, asks, born), daemon=True
                ).start()

    def pipe(self, source: socket.socket, sink: socket.socket, asks: bool, born: int) -> None:
        try:
            while data := source.recv(65536):
                if asks and born < self.cut_below:
                    self.cuts += 1
                    for end in (source, sink):  # a reset, not a polite close
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        end.close()
                    return
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.listener.close()


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_facts_are_asked_on_a_new_connection_when_the_kept_one_was_cut(lab, untrusted_panel):
    """A kept connection can die just as it is reused (LXD closing it while idle): the
    facts are then asked on a new connection instead of calling the host unreachable."""
    host = enroll(lab_host(lab))
    proxy = CuttingProxy((lab_host(lab)["address"], 8443))
    proxy.start()
    target = dataclasses.replace(target_for(host), endpoint=f"https://127.0.0.1:{proxy.port}")
    try:
        assert lxd.server_facts(target)["auth"] == "trusted"
        kept = lxd.reused_client(target)
        proxy.cut_open_connections()

        facts = lxd.server_facts(target)

        assert proxy.cuts == 1, "the kept connection was not the one asked first"
        assert facts["auth"] == "trusted"
        assert facts["server_version"].startswith("5.")
        assert lxd.reused_client(target) is not kept
    finally:
        lxd.forget_client(target)
        proxy.stop()
