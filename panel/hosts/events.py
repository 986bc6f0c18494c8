"""Live inventory: one LXD event subscription per enrolled host, each change applied to the
rows within moments of it happening, whoever made it (the panel, `lxc`, another tool).

Each host has a thread that subscribes to its `/1.0/events` (lifecycle and operation
events), syncs the host once subscribed (what changed while it was not listening), then
reads one instance again for each event about it, or marks it gone. A dropped subscription
is retried with a growing wait (1 s up to a minute). Celery beat's full sync every
PANEL_HOST_SYNC_MINUTES stays as the safety net.

It runs as its own process (`manage.py watch_events`, started by bin/panel and
docker-compose), not as a Celery task: a subscription lives for days, and a task that never
ends would hold a worker slot and be redelivered by Redis after the visibility timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.db import close_old_connections, connection

from panel import lxd
from panel.hosts.connection import target_for
from panel.hosts.inventory import mark_gone, sync, sync_instance
from panel.hosts.models import Host

logger = logging.getLogger(__name__)
BACKOFF_SECONDS = (1, 2, 5, 10, 30, 60)
STEADY_SECONDS = 60  # a subscription that lasted this long starts the backoff over
HOSTS_RECHECK_SECONDS = 10


def apply_event(host: Host, event: dict) -> str | None:
    """Bring the row of the instance an event is about up to date; its name, or None."""
    found = lxd.instance_of(event)
    if found is None:
        return None
    name, action = found
    if action == "instance-deleted":
        mark_gone(host, name)
    elif action == "instance-renamed":
        old = (event.get("metadata") or {}).get("context", {}).get("old_name")
        if old:
            mark_gone(host, str(old))
        sync_instance(host, name)
    else:
        sync_instance(host, name)
    return name


class HostWatch(threading.Thread):
    """The subscription of one host, reconnecting until stopped."""

    def __init__(self, host_id: int) -> None:
        super().__init__(name=f"events-host-{host_id}", daemon=True)
        self.host_id = host_id
        self.stopping = threading.Event()
        self.stream: lxd.EventStream | None = None

    def stop(self) -> None:
        self.stopping.set()
        if self.stream is not None:
            self.stream.close()

    def run(self) -> None:
        failures = 0
        try:
            while not self.stopping.is_set():
                began = time.monotonic()
                if not self.listen_once():
                    return
                if time.monotonic() - began > STEADY_SECONDS:
                    failures = 0
                wait = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                self.stopping.wait(wait)
        finally:
            connection.close()

    def listen_once(self) -> bool:
        """Subscribe, catch up, follow until the stream ends; False once the host is gone."""
        close_old_connections()
        host = Host.objects.enrolled().filter(pk=self.host_id).first()
        if host is None:
            return False
        try:
            self.stream = lxd.EventStream(
                target_for(host), lambda event: self.on_event(host, event)
            )
            sync(host)
            logger.info("following %s's events", host.name)
            self.stream.run()
            logger.warning("%s's event stream ended; subscribing again", host.name)
        except lxd.LXDError as error:
            logger.warning("%s's events: %s", host.name, error)
        finally:
            self.stream = None
        return True

    def on_event(self, host: Host, event: dict) -> None:
        try:
            apply_event(host, event)
        except lxd.LXDError as error:  # the next event, or the next sync, tries again
            logger.warning("%s: could not apply %s: %s", host.name, event.get("type"), error)
        except Exception:
            logger.exception("%s: applying an event failed", host.name)
        finally:
            close_old_connections()


def watch(stop: threading.Event, heartbeat: Path | None = None) -> None:
    """Keep one HostWatch per enrolled host until `stop` is set; hosts added or removed are
    picked up within HOSTS_RECHECK_SECONDS. `heartbeat` is touched each round."""
    watches: dict[int, HostWatch] = {}
    try:
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            close_old_connections()
            wanted = set(Host.objects.enrolled().values_list("pk", flat=True))
            for host_id in wanted - set(watches):
                watches[host_id] = HostWatch(host_id)
                watches[host_id].start()
            for host_id in set(watches) - wanted:
                watches.pop(host_id).stop()
            for host_id in [pk for pk, w in watches.items() if not w.is_alive()]:
                del watches[host_id]  # ended on its own: started again next round
            stop.wait(HOSTS_RECHECK_SECONDS)
    finally:
        for host_watch in watches.values():
            host_watch.stop()
        for host_watch in watches.values():
            host_watch.join(timeout=5)
