"""Tasks that learn about hosts: what each LXD server says about itself."""

from __future__ import annotations

import logging

from panel import lxd
from panel.models import Host
from workers.celery import app

logger = logging.getLogger(__name__)


def target_for(host: Host) -> lxd.Target:
    return lxd.Target(endpoint=host.endpoint, server_certificate=host.server_certificate)


def refresh(host: Host) -> None:
    """Ask the host about itself and record the answer, or record why it did not answer."""
    try:
        facts = lxd.server_facts(target_for(host))
    except lxd.LXDError as error:
        logger.warning("host %s unreachable: %s", host.name, error)
        host.record_failure(str(error))
        return
    host.record_contact(facts)


@app.task
def refresh_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:  # deleted since it was queued: nothing to do
        refresh(host)


@app.task
def refresh_all_hosts() -> None:
    """Beat's periodic refresh: one task per host so a slow host never delays the others."""
    for host_id in Host.objects.values_list("pk", flat=True):
        refresh_host.delay(host_id)
