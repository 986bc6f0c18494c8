"""The hosts domain's Celery tasks: thin consumers that load their row and call the work
(enrolment, inventory, agent probes). Sent by name from panel/hosts/requests.py."""

from __future__ import annotations

from panel.hosts import agents, enrolment
from panel.hosts.inventory import fetch_logs, sync
from panel.hosts.models import Host, Instance
from panel.hosts.requests import request_sync
from workers.celery import app


@app.task
def sync_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id).enrolled().first()
    if host is not None:  # deleted since it was queued: nothing to do
        sync(host)


@app.task
def sync_all_hosts() -> None:
    """Beat's periodic sync: one task per host, so a slow host never delays the others."""
    for host_id in Host.objects.enrolled().values_list("pk", flat=True):
        request_sync(host_id)


@app.task
def fetch_certificate_task(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id, status=Host.Status.ENROLLING).first()
    if host is not None:
        enrolment.fetch_certificate(host)


@app.task
def establish_trust_task(host_id: int, sealed_secret: str) -> None:
    host = Host.objects.filter(pk=host_id, status=Host.Status.ENROLLING).first()
    if host is not None:
        enrolment.establish_trust(host, sealed_secret)


@app.task
def fetch_logs_task(instance_id: int) -> None:
    instance = Instance.objects.select_related("host").filter(pk=instance_id).first()
    if instance is not None:
        fetch_logs(instance)


@app.task
def probe_agents() -> None:
    agents.probe(list(Host.objects.enrolled()))


@app.task
def probe_agent(host_id: int) -> None:
    """One host's agent, right after it was added or synced by hand: its answer (criu
    check, CPU flags) should not wait for beat's next round."""
    agents.probe(list(Host.objects.enrolled().filter(pk=host_id)))
