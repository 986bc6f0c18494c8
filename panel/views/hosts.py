from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from panel.access import admin_required, can_manage_hosts, can_operate, get_host
from panel.forms import AddHostForm, ConfirmHostForm
from panel.models import Host
from panel.sealed import seal
from panel.views.dashboard import fleet
from workers.bundles import probe_agent
from workers.hosts import establish_trust_task, fetch_certificate_task, sync_host

# The host page lists this many containers and links to the filtered list for the rest.
HOST_PAGE_CONTAINERS = 100


@login_required
@require_GET
def host_list(request: HttpRequest) -> HttpResponse:
    enrolling = Host.objects.filter(status=Host.Status.ENROLLING)
    return render(request, "panel/hosts/list.html", {"hosts": fleet(), "enrolling": enrolling})


@login_required
@require_GET
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
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
    return render(request, "panel/hosts/detail.html", context)


@login_required
@admin_required
@require_http_methods(["GET", "POST"])
def host_add(request: HttpRequest) -> HttpResponse:
    form = AddHostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.cleaned_data["endpoint"]
        with transaction.atomic():
            if endpoint.startswith("/"):
                host = Host.objects.create(name=form.cleaned_data["name"], endpoint=endpoint)
                sync_host.delay_on_commit(host.pk)
                return redirect("host-detail", pk=host.pk)
            host = Host.objects.create(
                name=form.cleaned_data["name"],
                endpoint=endpoint,
                status=Host.Status.ENROLLING,
                enrollment=Host.Enrollment.FETCHING_CERTIFICATE,
            )
            fetch_certificate_task.delay_on_commit(host.pk)
        return redirect("host-enroll", pk=host.pk)
    return render(request, "panel/hosts/add.html", {"form": form})


@login_required
@admin_required
@require_GET
def host_enroll(request: HttpRequest, pk: int) -> HttpResponse:
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
    with transaction.atomic():
        host.server_certificate = host.offered_certificate
        host.enrollment = Host.Enrollment.TRUSTING
        host.last_error = ""
        host.save(update_fields=["server_certificate", "enrollment", "last_error"])
        establish_trust_task.delay_on_commit(host.pk, seal(form.cleaned_data["secret"]))
    return redirect("host-enroll", pk=host.pk)


@login_required
@admin_required
@require_POST
def host_enroll_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Start over from fetching the certificate: nothing from the failed try is kept."""
    host = get_host(request, pk, manage=True)
    if host.status == Host.Status.ENROLLING:
        with transaction.atomic():
            host.server_certificate = host.offered_certificate = host.last_error = ""
            host.enrollment = Host.Enrollment.FETCHING_CERTIFICATE
            host.save()
            fetch_certificate_task.delay_on_commit(host.pk)
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
    sync_host.delay_on_commit(host.pk)
    probe_agent.delay_on_commit(host.pk)
    messages.info(request, f"Syncing {host.name}: the page updates when it answers.")
    return redirect("host-detail", pk=host.pk)
