"""Adding a host: fetch its certificate, let an administrator confirm the fingerprint, then
use the trust password or token once. The request side (what views, the API and the shell
call) creates or moves the row and sends the job; the work side runs in a worker."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from panel import broker, lxd
from panel.hosts.connection import target_for
from panel.hosts.inventory import sync
from panel.hosts.models import Host
from panel.hosts.requests import request_agent_probe, request_sync
from panel.hosts.sealed import seal, unseal

FETCH_CERTIFICATE = "panel.hosts.tasks.fetch_certificate_task"
ESTABLISH_TRUST = "panel.hosts.tasks.establish_trust_task"


# --- the request side ------------------------------------------------------------------------


def add_host(name: str, endpoint: str) -> Host:
    """A local socket is trusted by the file system: add it and sync. An HTTPS endpoint
    starts enrolment: its certificate is fetched to be confirmed."""
    with transaction.atomic():
        if endpoint.startswith("/"):
            host = Host.objects.create(name=name, endpoint=endpoint)
            request_sync(host)
            return host
        host = Host.objects.create(
            name=name,
            endpoint=endpoint,
            status=Host.Status.ENROLLING,
            enrollment=Host.Enrollment.FETCHING_CERTIFICATE,
        )
        broker.send_on_commit(FETCH_CERTIFICATE, host.pk)
    return host


def confirm_fingerprint(host: Host, secret: str) -> None:
    """Pin the confirmed certificate and send the secret, sealed, to the worker that uses it."""
    with transaction.atomic():
        host.server_certificate = host.offered_certificate
        host.enrollment = Host.Enrollment.TRUSTING
        host.last_error = ""
        host.save(update_fields=["server_certificate", "enrollment", "last_error"])
        broker.send_on_commit(ESTABLISH_TRUST, host.pk, seal(secret))


def restart_enrolment(host: Host) -> None:
    """Start over from fetching the certificate: nothing from the failed try is kept."""
    with transaction.atomic():
        host.server_certificate = host.offered_certificate = host.last_error = ""
        host.enrollment = Host.Enrollment.FETCHING_CERTIFICATE
        host.save()
        broker.send_on_commit(FETCH_CERTIFICATE, host.pk)


# --- the work --------------------------------------------------------------------------------


def fetch_certificate(host: Host) -> None:
    """Fetch the certificate to confirm, and ask (untrusted) whether the server is LXD or
    Incus: the confirm step then asks for what that server takes (Incus: a token only)."""
    try:
        host.offered_certificate = lxd.fetch_server_certificate(host.endpoint, settings.LXD_TIMEOUT)
        offered = lxd.Target(host.endpoint, host.offered_certificate, timeout=settings.LXD_TIMEOUT)
        platform = lxd.identify_server(offered)
    except lxd.LXDError as error:
        host.record_enrollment_failure(str(error))
        return
    host.facts = {"server": platform.key}
    host.enrollment = Host.Enrollment.AWAITING_CONFIRMATION
    host.save(update_fields=["offered_certificate", "facts", "enrollment"])


def establish_trust(host: Host, sealed_secret: str) -> None:
    secret = unseal(sealed_secret)
    if secret is None:
        host.record_enrollment_failure(
            "The password or token expired before a worker could use it: enter it again."
        )
        return
    try:
        lxd.trust(target_for(host), secret)
    except lxd.LXDError as error:
        host.record_enrollment_failure(str(error), secret)
        return
    host.enrollment, host.status, host.last_error = Host.Enrollment.DONE, Host.Status.UNKNOWN, ""
    host.save(update_fields=["enrollment", "status", "last_error"])
    sync(host)
    request_agent_probe(host)
