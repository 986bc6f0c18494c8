"""Asking for host work from the request side (views, the API, the shell, other domains):
each sends its job by name after commit (panel/broker.py), never importing a task module."""

from __future__ import annotations

from panel import broker
from panel.hosts.models import Host, Instance

SYNC_HOST = "panel.hosts.tasks.sync_host"
PROBE_AGENT = "panel.hosts.tasks.probe_agent"
FETCH_LOGS = "panel.hosts.tasks.fetch_logs_task"


def request_sync(host: Host | int) -> None:
    """Re-read the host's facts and inventory (its page shows the truth when it answers)."""
    broker.send_on_commit(SYNC_HOST, host if isinstance(host, int) else host.pk)


def request_agent_probe(host: Host) -> None:
    """Ask the host's agent for criu check and CPU flags now, not at beat's next round."""
    broker.send_on_commit(PROBE_AGENT, host.pk)


def request_log_fetch(instance: Instance) -> None:
    broker.send_on_commit(FETCH_LOGS, instance.pk)
