from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from panel.access import can_operate, get_bundle, get_instance, get_operation
from panel.models import Bundle
from workers.bundles import request_bundle

PAGE_SIZE = 50


@login_required
@require_GET
def bundle_list(request: HttpRequest) -> HttpResponse:
    bundles = Bundle.objects.select_related("operation", "requested_by")
    page = Paginator(bundles, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "panel/bundles/list.html", {"page": page})


@login_required
@require_GET
def bundle_detail(request: HttpRequest, pk: int) -> HttpResponse:
    bundle = get_bundle(request, pk)
    context = {"bundle": bundle, "can_download": can_operate(request.user)}
    return render(request, "panel/bundles/detail.html", context)


@login_required
@require_GET
def bundle_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled fragment while collecting; 286 (stop polling) plus a refresh when done."""
    bundle = get_bundle(request, pk)
    response = render(request, "panel/bundles/_status.html", {"bundle": bundle})
    if bundle.status == Bundle.Status.COLLECTING or not request.htmx:
        return response
    stop = HttpResponseStopPolling(response.content)
    stop["HX-Refresh"] = "true"  # the full page shows the report and the manifest
    return stop


@login_required
@require_GET
def bundle_download(request: HttpRequest, pk: int) -> FileResponse:
    """Only by primary key: the file name comes from the row, never from the request."""
    bundle = get_bundle(request, pk, download=True)
    if bundle.status != Bundle.Status.READY or not bundle.file:
        raise Http404("This bundle has no file (still collecting, or it failed).")
    filename = f"lxd-bundle-{bundle.pk}-{bundle.instance_name or 'host'}.tar.gz"
    return FileResponse(
        bundle.file.open("rb"), as_attachment=True, filename=filename,
        content_type="application/gzip",
    )  # fmt: skip


@login_required
@require_POST
def instance_bundle(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    bundle = request_bundle(request.user, instance=instance)
    return redirect("bundle-detail", pk=bundle.pk)


@login_required
@require_POST
def operation_bundle(request: HttpRequest, pk: int) -> HttpResponse:
    operation = get_operation(request, pk, operate=True)
    bundle = request_bundle(request.user, operation=operation)
    return redirect("bundle-detail", pk=bundle.pk)
