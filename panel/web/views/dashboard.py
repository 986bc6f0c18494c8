from __future__ import annotations

import datetime as dt
import stat
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from panel import health
from panel.hosts import enrolment
from panel.models import Host, Operation
from panel.web.access import HtmxHttpRequest, admin_required


def local_lxd_socket() -> str | None:
    """The first local LXD socket that exists and is not registered yet."""
    registered = set(Host.objects.values_list("endpoint", flat=True))
    for path in settings.LOCAL_LXD_SOCKETS:
        try:
            is_socket = stat.S_ISSOCK(Path(path).stat().st_mode)
        except OSError:
            continue
        if is_socket and path not in registered:
            return path
    return None


def fleet() -> list[Host]:
    """Enrolled hosts with their container counts, in one query."""
    present = Q(instances__gone_at__isnull=True)
    return list(
        Host.objects.enrolled().annotate(
            container_count=Count("instances", filter=present),
            running_count=Count("instances", filter=present & Q(instances__status="Running")),
        )
    )


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    hosts = fleet()
    operations = Operation.objects.select_related("source_host", "target_host", "requested_by")
    context = {
        "hosts": hosts,
        "recent_operations": operations[:10],
        "recent_failures": operations.filter(
            status__in=[Operation.Status.FAILED, Operation.Status.INTERRUPTED]
        )[:5],
        "local_socket": local_lxd_socket(),
        # Poll only while a host has not answered yet; the fragment stops itself after.
        "waiting_for_contact": any(host.status == Host.Status.UNKNOWN for host in hosts),
    }
    if request.htmx:
        return render(request, "panel/dashboard.html#host-table", context)
    return render(request, "panel/dashboard.html", context)


@login_required
@admin_required
@require_POST
def add_local_host(request: HttpRequest) -> HttpResponse:
    socket_path = local_lxd_socket()
    if socket_path is None:
        messages.error(request, "No unregistered local LXD socket was found.")
        return redirect("dashboard")
    name = "local" if not Host.objects.filter(name="local").exists() else "local-socket"
    host = enrolment.add_host(name, socket_path)
    messages.success(request, f"Added {host.name} ({socket_path}); contacting it now.")
    return redirect("host-detail", pk=host.pk)


@login_required
@require_GET
def health_report(request: HttpRequest) -> JsonResponse:
    """Database, Redis, workers, and each host's recorded reachability and agent. It never
    calls LXD (no web request does): `manage.py doctor` asks the hosts live."""
    recent = timezone.now() - dt.timedelta(minutes=3 * settings.AGENT_PROBE_MINUTES)
    findings = [health.database(), health.redis()]
    if findings[-1].ok:
        findings.append(health.workers(timeout=1.0))
    findings += health.hosts(live=False)
    for host in Host.objects.enrolled():
        seen = host.agent_seen_at is not None and host.agent_seen_at >= recent
        findings.append(
            health.Finding(
                f"agent on {host.name}",
                seen,
                f"last answered {host.agent_seen_at or 'never'}",
                "" if seen else "Run the agent on that host: docs/agent.md.",
            )
        )
    ok = all(finding.ok for finding in findings)
    body = {"ok": ok, "checks": [asdict(finding) for finding in findings]}
    return JsonResponse(body, status=200 if ok else 503)
