"""Follow every enrolled host's LXD events and keep the inventory live (panel/hosts/events.py).
Run it as one process beside the workers; stop it with SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.core.management.base import BaseCommand

from panel.hosts.events import watch


class Command(BaseCommand):
    help = "Follow every host's /1.0/events and update containers within moments of a change."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--heartbeat", default="", help="A file touched every few seconds (health checks)."
        )

    def handle(self, *args, heartbeat: str, **options) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("Following the hosts' LXD events (Ctrl-C stops).")
        watch(stop, Path(heartbeat) if heartbeat else None)
