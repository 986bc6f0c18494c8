from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from panel.accounts.roles import can_operate
from panel.bundles.requests import request_bundle
from panel.models import Bundle
from panel.web.access import HtmxHttpRequest, get_bundle, get_instance, get_operation

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
def bundle_status(request: HtmxHttpRequest, pk: int) -> HttpResponse:
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
    # Named after its servers, as the tarball's folder is (lxd-bundle-N, incus-bundle-N).
    folder = bundle.manifest.get("folder") or f"lxd-bundle-{bundle.pk}"
    filename = f"{folder}-{bundle.instance_name or 'host'}.tar.gz"
    try:
        tarball = bundle.file.open("rb")
    except FileNotFoundError:  # deleted by hand, or written where this replica cannot see
        raise Http404(
            "This bundle's file is missing from the panel's storage (PANEL_FILE_STORAGE): "
            "collect a new bundle."
        ) from None
    return FileResponse(
        tarball, as_attachment=True, filename=filename, content_type="application/gzip"
    )


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
