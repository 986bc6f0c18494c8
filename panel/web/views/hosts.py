from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from panel.accounts.roles import can_manage_hosts, can_operate
from panel.hosts import enrolment
from panel.hosts.requests import request_agent_probe, request_sync
from panel.models import Host
from panel.web.access import HtmxHttpRequest, admin_required, get_host
from panel.web.forms import AddHostForm, ConfirmHostForm
from panel.web.views.dashboard import fleet
from panel.web.views.maintenance import host_panel

# The host page lists this many containers and links to the filtered list for the rest.
HOST_PAGE_CONTAINERS = 100


@login_required
@require_GET
def host_list(request: HttpRequest) -> HttpResponse:
    enrolling = Host.objects.filter(status=Host.Status.ENROLLING)
    return render(request, "panel/hosts/list.html", {"hosts": fleet(), "enrolling": enrolling})


@login_required
@require_GET
def host_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk)
    if host.status == Host.Status.ENROLLING:
        return redirect("host-enroll", pk=host.pk)
    present = host.instances.present()
    instances = present.only("name", "status", "type").order_by("name")[:HOST_PAGE_CONTAINERS]
    context = {
        "host": host,
        "instances": instances,
        "container_count": present.count(),
        "can_operate": can_operate(request.user),
        "can_manage": can_manage_hosts(request.user),
    }
    if request.htmx:
        return render(request, "panel/hosts/detail.html#host-facts", context)
    context.update(host_panel(host, request.user))
    return render(request, "panel/hosts/detail.html", context)


@login_required
@admin_required
@require_http_methods(["GET", "POST"])
def host_add(request: HttpRequest) -> HttpResponse:
    form = AddHostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        host = enrolment.add_host(form.cleaned_data["name"], form.cleaned_data["endpoint"])
        if host.status != Host.Status.ENROLLING:
            return redirect("host-detail", pk=host.pk)
        return redirect("host-enroll", pk=host.pk)
    return render(request, "panel/hosts/add.html", {"form": form})


@login_required
@admin_required
@require_GET
def host_enroll(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk, manage=True)
    if host.status != Host.Status.ENROLLING:
        if request.htmx:  # enrollment finished while the page polled: go to the host
            response = HttpResponseStopPolling()
            response["HX-Redirect"] = host_url(host)
            return response
        return redirect("host-detail", pk=host.pk)
    form = ConfirmHostForm(host=host, initial={"fingerprint": host.offered_fingerprint})
    context = {"host": host, "form": form, "Enrollment": Host.Enrollment}
    if request.htmx:
        return render(request, "panel/hosts/enroll.html#enrollment", context)
    return render(request, "panel/hosts/enroll.html", context)


def host_url(host: Host) -> str:
    return reverse("host-detail", kwargs={"pk": host.pk})


@login_required
@admin_required
@require_POST
def host_enroll_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk, manage=True)
    if host.enrollment != Host.Enrollment.AWAITING_CONFIRMATION:
        messages.error(request, "This host is not waiting for a confirmation.")
        return redirect("host-enroll", pk=host.pk)
    form = ConfirmHostForm(request.POST, host=host)
    if not form.is_valid():
        context = {"host": host, "form": form, "Enrollment": Host.Enrollment}
        return render(request, "panel/hosts/enroll.html", context, status=400)
    enrolment.confirm_fingerprint(host, form.cleaned_data["secret"])
    return redirect("host-enroll", pk=host.pk)


@login_required
@admin_required
@require_POST
def host_enroll_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Start over from fetching the certificate: nothing from the failed try is kept."""
    host = get_host(request, pk, manage=True)
    if host.status == Host.Status.ENROLLING:
        enrolment.restart_enrolment(host)
    return redirect("host-enroll", pk=host.pk)


@login_required
@admin_required
@require_POST
def host_remove(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk, manage=True)
    host.delete()
    messages.success(request, f"Removed {host.name} from the panel (nothing changed on the host).")
    return redirect("host-list")


@login_required
@require_POST
def host_sync(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_host(request, pk)
    if not can_operate(request.user):
        raise PermissionDenied("Only operators can ask a host to sync.")
    request_sync(host)
    request_agent_probe(host)
    messages.info(request, f"Syncing {host.name}: the page updates when it answers.")
    return redirect("host-detail", pk=host.pk)
