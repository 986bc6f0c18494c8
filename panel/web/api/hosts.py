"""The API's hosts: list and read them, and, for administrators, add one as the web does
(fetch its certificate, confirm the fingerprint you compared, trust it once) and remove it.

The same forms (AddHostForm, ConfirmHostForm) and the same enrolment functions as the web's
pages: the fingerprint sent with the secret must be the one the host offered, or nothing is
trusted."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse

from panel.accounts.roles import can_manage_hosts
from panel.hosts import enrolment
from panel.models import Host
from panel.web.access import get_host
from panel.web.api.base import (
    ApiError,
    allow,
    created,
    form_errors,
    json_object,
    paginated,
    token_required,
)
from panel.web.api.schema import describe
from panel.web.api.serialise import host_json
from panel.web.api.shapes import HostShape
from panel.web.forms import AddHostForm, ConfirmHostForm


def managed_host(request: HttpRequest, pk: int) -> Host:
    return get_host(request, pk, manage=True)


@describe("GET", "Every host: status, facts, capabilities.", response=HostShape, page=True)
@token_required
@allow("GET")
def host_list(request: HttpRequest) -> HttpResponse:
    return paginated(request, Host.objects.all(), host_json)


@describe(
    "POST",
    "Add a host (administrators). An HTTPS host starts enrolling: read it until "
    "`offered_fingerprint` is set, compare it with `lxc info` on the host, then confirm.",
    response=HostShape, status=201, body=AddHostForm, refusals=(400, 403, 413, 415),
)  # fmt: skip
@token_required
@allow("POST")
def host_enroll(request: HttpRequest) -> HttpResponse:
    if not can_manage_hosts(request.user):
        raise PermissionDenied("Only administrators can manage hosts.")
    form = AddHostForm(json_object(request))
    if not form.is_valid():
        return form_errors(form, "Not added")
    host = enrolment.add_host(form.cleaned_data["name"], form.cleaned_data["endpoint"])
    return created(request, host_json(request, host))


@describe("GET", "One host, with its enrolment step while it is being added.",
          response=HostShape, refusals=(404,))  # fmt: skip
@describe("DELETE", "Remove the host from the panel (administrators); nothing changes on it.",
          status=204, refusals=(403, 404))  # fmt: skip
@token_required
@allow("GET", "DELETE")
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(host_json(request, get_host(request, pk)))
    managed_host(request, pk).delete()
    return HttpResponse(status=204)


@describe(
    "POST",
    "Trust an enrolling host: `fingerprint` is the one you compared with `lxc info` on the "
    "host, `secret` its trust password or token (used once, never stored).",
    response=HostShape, status=202, body=ConfirmHostForm, refusals=(400, 403, 404, 409),
)  # fmt: skip
@token_required
@allow("POST")
def host_enroll_confirm(request: HttpRequest, pk: int) -> JsonResponse:
    host = managed_host(request, pk)
    if host.enrollment != Host.Enrollment.AWAITING_CONFIRMATION:
        raise ApiError(409, f"This host is not waiting for a confirmation ({host.enrollment}).")
    form = ConfirmHostForm(json_object(request), host=host)
    if not form.is_valid():
        return form_errors(form, "Not trusted")
    enrolment.confirm_fingerprint(host, form.cleaned_data["secret"])
    return JsonResponse(host_json(request, host), status=202)


@describe("POST", "Fetch an enrolling host's certificate again (after a failure or a change).",
          response=HostShape, status=202, refusals=(403, 404, 409))  # fmt: skip
@token_required
@allow("POST")
def host_enroll_retry(request: HttpRequest, pk: int) -> JsonResponse:
    host = managed_host(request, pk)
    if host.status != Host.Status.ENROLLING:
        raise ApiError(409, "This host is already enrolled.")
    enrolment.restart_enrolment(host)
    return JsonResponse(host_json(request, host), status=202)
