"""The LXD connection for a host: how the panel reaches it, as a `lxd.Target`."""

from __future__ import annotations

from django.conf import settings

from panel import lxd
from panel.hosts.identity import client_cert_files
from panel.hosts.models import Host


def target_for(host: Host) -> lxd.Target:
    client_cert = None
    if not host.is_local_socket:
        client_cert = client_cert_files()
    return lxd.Target(
        endpoint=host.endpoint,
        server_certificate=host.server_certificate,
        client_cert=client_cert,
        # Give up connecting quickly (a host that is away must not hold a worker), but
        # let a busy host take its time to answer.
        timeout=(min(5.0, settings.LXD_TIMEOUT), float(settings.LXD_TIMEOUT)),
    )
