"""Tasks that learn about hosts: enrollment (certificate, trust) and the inventory sync."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from panel import lxd
from panel.inventory import record_inventory
from panel.models import Host, Instance, InstanceLog
from panel.sealed import unseal
from workers.celery import app

logger = logging.getLogger(__name__)

LOG_FILE_MAX_BYTES = 2 * 1024 * 1024


def target_for(host: Host) -> lxd.Target:
    client_cert = None
    if not host.is_local_socket:
        client_cert = lxd.ensure_client_certificate(Path(settings.PANEL_CLIENT_CERT_DIR))
    return lxd.Target(
        endpoint=host.endpoint,
        server_certificate=host.server_certificate,
        client_cert=client_cert,
        # Give up connecting quickly (a host that is away must not hold a worker), but
        # let a busy host take its time to answer.
        timeout=(min(5.0, settings.LXD_TIMEOUT), float(settings.LXD_TIMEOUT)),
    )


def sync(host: Host) -> None:
    """Ask the host about itself and its instances, or record why it did not answer."""
    try:
        facts, instances = lxd.host_inventory(target_for(host))
    except lxd.LXDError as error:
        logger.warning("host %s unreachable: %s", host.name, error)
        host.record_failure(str(error))
        return
    host.record_contact(facts)
    if facts.get("auth") == "trusted":
        record_inventory(host, instances)
    else:
        host.record_failure("The host answers but does not trust the panel: add it again.")


def fetch_certificate(host: Host) -> None:
    try:
        host.offered_certificate = lxd.fetch_server_certificate(host.endpoint, settings.LXD_TIMEOUT)
    except lxd.LXDError as error:
        host.record_enrollment_failure(str(error))
        return
    host.enrollment = Host.Enrollment.AWAITING_CONFIRMATION
    host.save(update_fields=["offered_certificate", "enrollment"])


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
        host.record_enrollment_failure(str(error))
        return
    host.enrollment, host.status, host.last_error = Host.Enrollment.DONE, Host.Status.UNKNOWN, ""
    host.save(update_fields=["enrollment", "status", "last_error"])
    sync(host)
    from workers.bundles import probe_agent  # workers.bundles imports this module

    probe_agent.delay(host.pk)


def fetch_logs(instance: Instance) -> None:
    try:
        logs = lxd.instance_logs(target_for(instance.host), instance.name, LOG_FILE_MAX_BYTES)
    except lxd.LXDError as error:
        InstanceLog.objects.update_or_create(
            instance=instance,
            filename="(fetch failed)",
            defaults={"content": str(error), "fetched_at": timezone.now()},
        )
        return
    instance.logs.all().delete()
    InstanceLog.objects.bulk_create(
        InstanceLog(instance=instance, filename=name, content=text, truncated=truncated)
        for name, text, truncated in logs
    )


@app.task
def sync_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id).enrolled().first()
    if host is not None:  # deleted since it was queued: nothing to do
        sync(host)


@app.task
def sync_all_hosts() -> None:
    """Beat's periodic sync: one task per host, so a slow host never delays the others."""
    for host_id in Host.objects.enrolled().values_list("pk", flat=True):
        sync_host.delay(host_id)


@app.task
def fetch_certificate_task(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id, status=Host.Status.ENROLLING).first()
    if host is not None:
        fetch_certificate(host)


@app.task
def establish_trust_task(host_id: int, sealed_secret: str) -> None:
    host = Host.objects.filter(pk=host_id, status=Host.Status.ENROLLING).first()
    if host is not None:
        establish_trust(host, sealed_secret)


@app.task
def fetch_logs_task(instance_id: int) -> None:
    instance = Instance.objects.select_related("host").filter(pk=instance_id).first()
    if instance is not None:
        fetch_logs(instance)
