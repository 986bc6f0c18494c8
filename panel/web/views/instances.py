from __future__ import annotations

from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from panel.accounts.roles import can_manage_hosts, can_operate
from panel.hosts.requests import request_log_fetch
from panel.hosts.risks import checkpoint_risks
from panel.maintenance.mode import closed_because
from panel.models import Host, Instance, SnapshotSchedule
from panel.operations.aftercare import left_by
from panel.operations.kinds import checkpoint_capability
from panel.redaction import ShownConfig, policy, shown_config
from panel.web.access import HtmxHttpRequest, get_instance
from panel.web.filters import ContainerFilter, web_filtered
from panel.web.forms import EXPIRY_CHOICES, MigrationForm

PAGE_SIZE = 100
STATES = ["Running", "Stopped", "Frozen", "Error"]


# The columns `lxc list` shows (and the host), each sortable: ?sort=<column> or -<column>.
SORTS = {
    "name": ("name", "host__name"),
    "host": ("host__name", "name"),
    "state": ("status", "name"),
    "ipv4": ("ipv4", "name"),
    "type": ("type", "name"),
    "snapshots": ("snapshot_count", "name"),
    "saved": ("stateful", "name"),
}


def sort_order(raw: str) -> tuple[str, list[str]]:
    """The chosen sort (by name when unknown) and its ORDER BY."""
    column = raw.removeprefix("-")
    if column not in SORTS:
        return "name", list(SORTS["name"])
    first, *then = SORTS[column]
    return raw, [f"-{first}" if raw.startswith("-") else first, *then]


@login_required
@require_GET
def instance_list(request: HtmxHttpRequest) -> HttpResponse:
    sort, order = sort_order(request.GET.get("sort", ""))
    # Only what the table shows: hosts carry ~10 KB of facts and instances their whole config.
    instances = (
        Instance.objects.present()
        .select_related("host")
        .only("name", "status", "type", "state", "ipv4", "stateful", "host__name")
        .annotate(snapshot_count=Count("snapshots"))
        .order_by(*order)
    )
    instances, filters = web_filtered(ContainerFilter, request.GET, instances)
    page = Paginator(instances, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({key: value for key, value in filters.items() if value})
    context = {
        "page": page,
        "filters": filters,
        "query": query,
        "sort": sort,
        "columns": COLUMNS,
        "hosts": Host.objects.enrolled().values_list("name", flat=True),
        "states": STATES,
    }
    if request.htmx:
        return render(request, "panel/instances/list.html#instance-table", context)
    return render(request, "panel/instances/list.html", context)


COLUMNS = [
    ("name", "NAME"),
    ("host", "HOST"),
    ("state", "STATE"),
    ("ipv4", "IPV4"),
    ("type", "TYPE"),
    ("snapshots", "SNAPSHOTS"),
    ("saved", "SAVED STATE"),
]


# The container page's sections, each at ?tab=<name>: one screen each instead of one scroll.
TABS = [
    ("overview", "Overview"),
    ("snapshots", "Snapshots"),
    ("operations", "Operations"),
    ("logs", "Logs"),
    ("config", "Configuration"),
]
# The parts that poll (every 5 s, htmx): each answers with its fragment alone.
LIVE_PARTS = {
    "overview": "panel/instances/_info.html",
    "snapshots": "panel/instances/_snapshots.html",
}


@login_required
@require_GET
def instance_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk)
    tab = request.GET.get("tab", "overview")
    if tab not in dict(TABS):
        tab = "overview"
    context = {
        "instance": instance,
        "can_operate": can_operate(request.user),
        "can_reveal": can_manage_hosts(request.user),
        "tab": tab,
    }
    if tab == "snapshots":
        context["snapshots"] = instance.snapshots.all()
    if request.htmx and tab in LIVE_PARTS:  # a poll: one row, its snapshots, nothing else
        return render(request, LIVE_PARTS[tab], context)
    context |= {"tabs": TABS, **TAB_CONTEXT[tab](instance)}
    return render(request, "panel/instances/detail.html", context)


def _overview(instance: Instance) -> dict:
    return {
        "left_by": left_by(instance),
        "active": instance.operations.active().select_related("source_host").first(),
        "risks": checkpoint_risks(instance.expanded_config, instance.expanded_devices),
        "stateful_capability": checkpoint_capability(instance.host),
        "expiry_choices": EXPIRY_CHOICES,
        "migration_form": MigrationForm(instance=instance),
        "host_closed": closed_because(instance.host),
    }


def _snapshots(instance: Instance) -> dict:
    return {
        "schedule": SnapshotSchedule.objects.filter(instance=instance).first(),
        "stateful_capability": checkpoint_capability(instance.host),
    }


def _config(instance: Instance) -> dict:
    """Redacted for everyone (panel/redaction.py); the keys whose values were removed are
    listed, for an administrator to reveal one at a time."""
    shown = shown_config(instance.expanded_config, instance.expanded_devices)
    return {"config_yaml": config_as_yaml(instance, shown), "redacted_keys": shown.redacted_keys}


def _operations(instance: Instance) -> dict:
    operations = instance.operations.select_related("source_host", "requested_by")
    return {"recent_operations": operations[:10]}


TAB_CONTEXT = {
    "overview": _overview,
    "snapshots": _snapshots,
    "operations": _operations,
    "logs": lambda instance: {"logs": instance.logs.all()},
    "config": _config,
}


def tab_url(instance: Instance, tab: str) -> str:
    return reverse("instance-detail", kwargs={"pk": instance.pk}) + f"?tab={tab}"


def config_as_yaml(instance: Instance, shown: ShownConfig) -> str:
    """What `lxc config show --expanded` prints, its secrets redacted (panel/redaction.py)."""
    document = {
        "architecture": instance.architecture,
        "config": shown.config,
        "devices": shown.devices,
        "ephemeral": instance.ephemeral,
        "profiles": instance.profiles,
        "stateful": instance.stateful,
        "description": policy().text(instance.description),
    }
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, allow_unicode=True)


@never_cache
@login_required
@require_POST
def instance_config_reveal(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One redacted config value, in clear, for an administrator; the audit trail records
    who asked for which key (the POST passes AuditMiddleware), never the value."""
    instance = get_instance(request, pk, reveal=True)
    name = request.POST.get("name", "")
    if name not in instance.expanded_config:
        raise Http404("No such config key.")
    context = {"instance": instance, "name": name, "value": instance.expanded_config[name]}
    if request.htmx:
        return render(request, "panel/instances/reveal.html#revealed-value", context)
    return render(request, "panel/instances/reveal.html", context)


@login_required
@require_POST
def instance_fetch_logs(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    request_log_fetch(instance)
    messages.info(request, "Fetching the log files from LXD; reload in a moment.")
    return redirect(tab_url(instance, "logs"))


@login_required
@require_GET
def instance_log(request: HttpRequest, pk: int, log_pk: int) -> HttpResponse:
    instance = get_instance(request, pk)
    log = get_object_or_404(instance.logs, pk=log_pk)
    return render(request, "panel/instances/log.html", {"instance": instance, "log": log})
