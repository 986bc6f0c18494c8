"""What `manage.py doctor` and the health page check, each with the fix when it fails."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from panel.broker import broker_url
from panel.models import Host
from panel.redaction import policy


@dataclass(frozen=True)
class Finding:
    """One check: what, whether it passed, what was seen, and how to fix it."""

    subject: str
    ok: bool
    detail: str
    fix: str = ""


def database() -> Finding:
    try:
        executor = MigrationExecutor(connection)  # loads every migration: build it once
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as error:  # any failure to reach the database
        return Finding("database", False, str(error), "Check PANEL_DATABASE_URL and the server.")
    if pending:
        return Finding(
            "database",
            False,
            f"{len(pending)} migrations not applied",
            "Run `manage.py migrate` (bin/panel does).",
        )
    return Finding("database", True, connection.vendor)


def identity() -> Finding:
    """The panel's LXD client identity opens with this machine's settings (doctor only: each
    machine of the panel must be able to, and a wrong PANEL_SECRET_KEY shows here first)."""
    from panel.hosts.identity import IdentityUnreadable, client_cert_files, client_identity

    try:
        client_cert_files()
    except IdentityUnreadable as error:
        return Finding("client identity", False, str(error))
    return Finding("client identity", True, f"fingerprint {client_identity().fingerprint[:16]}")


def redis() -> Finding:
    from workers.celery import app

    try:
        app.connection().ensure_connection(max_retries=1, timeout=3)
    except Exception as error:
        return Finding(
            "redis",
            False,
            f"{broker_url()}: {policy().text(str(error))}",
            "Start Redis (bin/panel starts one) or fix PANEL_REDIS_URL.",
        )
    return Finding("redis", True, broker_url())


def workers(timeout: float = 2.0) -> Finding:
    from workers.celery import app

    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as error:
        return Finding("workers", False, str(error), "Fix Redis first.")
    names = sorted(name for reply in replies for name in reply if not name.startswith("agent"))
    if not names:
        return Finding(
            "workers",
            False,
            "no Celery worker answered",
            "Start one: `celery -A workers worker -Q panel` (bin/panel does).",
        )
    return Finding("workers", True, ", ".join(names))


def agents() -> list[Finding]:
    """Ask every host's agent for its facts (bounded wait), as the beat probe does."""
    from panel.hosts.agents import probe

    hosts = list(Host.objects.enrolled())
    started = time.time()
    probe(hosts)
    findings = []
    for host in Host.objects.enrolled():
        answered = host.agent_seen_at is not None and host.agent_seen_at.timestamp() >= started - 1
        findings.append(
            Finding(
                f"agent on {host.name}",
                answered,
                "answered" if answered else "did not answer",
                "" if answered else "Run the agent on that host: see docs/agent.md.",
            )
        )
    return findings


def hosts(live: bool) -> list[Finding]:
    """Each host's reachability: asked live (doctor), or as last recorded (web page)."""
    from panel import lxd
    from panel.hosts.connection import target_for

    findings = []
    for host in Host.objects.enrolled():
        if live:
            try:
                facts = lxd.server_facts(target_for(host))
            except lxd.LXDError as error:
                findings.append(
                    Finding(
                        f"host {host.name}", False, str(error), "Check the daemon and the network."
                    )
                )
                continue
            trusted = facts.get("auth") == "trusted"
            findings.append(
                Finding(
                    f"host {host.name}",
                    trusted,
                    f"LXD {facts.get('server_version', '?')}, {facts.get('auth')}",
                    "" if trusted else "Add the host again to trust the panel.",
                )
            )
        else:
            ok = host.status == Host.Status.ONLINE
            findings.append(
                Finding(f"host {host.name}", ok, host.get_status_display(), host.last_error)
            )
    return findings
