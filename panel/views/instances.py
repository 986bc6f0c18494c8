from __future__ import annotations

from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from panel.access import can_operate, get_instance
from panel.forms import EXPIRY_CHOICES, MigrationForm
from panel.models import Host, Instance, SnapshotSchedule
from panel.risks import checkpoint_risks
from workers.hosts import fetch_logs_task

PAGE_SIZE = 100
STATES = ["Running", "Stopped", "Frozen", "Error"]


@login_required
@require_GET
def instance_list(request: HttpRequest) -> HttpResponse:
    filters = {
        "host": request.GET.get("host", "")[:63].replace("\x00", ""),
        "state": request.GET.get("state", "")[:16].replace("\x00", ""),
        "q": request.GET.get("q", "")[:63].replace("\x00", ""),
    }
    # Only what the table shows: hosts carry ~10 KB of facts and instances their whole config.
    instances = (
        Instance.objects.present()
        .select_related("host")
        .only("name", "status", "type", "state", "host__name")
        .order_by("name", "host__name")
    )
    if filters["host"]:
        instances = instances.filter(host__name=filters["host"])
    if filters["state"]:
        instances = instances.filter(status=filters["state"])
    if filters["q"]:
        instances = instances.filter(name__icontains=filters["q"])
    page = Paginator(instances, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({key: value for key, value in filters.items() if value})
    context = {
        "page": page,
        "filters": filters,
        "query": query,
        "hosts": Host.objects.enrolled().values_list("name", flat=True),
        "states": STATES,
    }
    if request.htmx:
        return render(request, "panel/instances/list.html#instance-table", context)
    return render(request, "panel/instances/list.html", context)


@login_required
@require_GET
def instance_detail(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk)
    context = {
        "instance": instance,
        "snapshots": instance.snapshots.all(),
        "can_operate": can_operate(request.user),
    }
    if request.htmx:  # the 5-second poll of the status and snapshots: nothing else
        return render(request, "panel/instances/detail.html#instance-info", context)
    operations = instance.operations.select_related("source_host", "requested_by")
    context |= {
        "logs": instance.logs.all(),
        "config_yaml": config_as_yaml(instance),
        "active": operations.active().first(),
        "recent_operations": operations[:5],
        "risks": checkpoint_risks(instance.expanded_config, instance.expanded_devices),
        "stateful_capability": instance.host.capability("stateful_stop"),
        "expiry_choices": EXPIRY_CHOICES,
        "schedule": SnapshotSchedule.objects.filter(instance=instance).first(),
        "migration_form": MigrationForm(instance=instance),
    }
    return render(request, "panel/instances/detail.html", context)


def config_as_yaml(instance: Instance) -> str:
    """What `lxc config show --expanded` prints."""
    document = {
        "architecture": instance.architecture,
        "config": instance.expanded_config,
        "devices": instance.expanded_devices,
        "ephemeral": instance.ephemeral,
        "profiles": instance.profiles,
        "stateful": instance.stateful,
        "description": instance.description,
    }
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, allow_unicode=True)


@login_required
@require_POST
def instance_fetch_logs(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    fetch_logs_task.delay_on_commit(instance.pk)
    messages.info(request, "Fetching the log files from LXD; reload in a moment.")
    return redirect("instance-detail", pk=instance.pk)


@login_required
@require_GET
def instance_log(request: HttpRequest, pk: int, log_pk: int) -> HttpResponse:
    instance = get_instance(request, pk)
    log = get_object_or_404(instance.logs, pk=log_pk)
    return render(request, "panel/instances/log.html", {"instance": instance, "log": log})
