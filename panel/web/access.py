"""The one access helper per object (404 first, then permission), the admin-only guard
for views, and the request types views annotate with; the roles themselves are
panel/accounts/roles.py."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connections, router
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django_htmx.middleware import HtmxDetails

from panel.accounts.roles import can_manage_hosts, can_operate
from panel.models import Bundle, FailureGroup, Host, Instance, MaintenancePlan, Operation
from panel.operations.models import HOST_SERVERS, host_servers_sql
from panel.rows import row_by_pk


class HtmxHttpRequest(HttpRequest):
    """A request after django-htmx's middleware, which sets request.htmx."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HttpRequest):
    """A request to a @login_required view, whose user is signed in."""

    user: User


def admin_required(view):
    """Host management is for administrators; anyone else gets 403, not a login loop."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not can_manage_hosts(request.user):
            raise PermissionDenied("Only administrators can manage hosts.")
        return view(request, *args, **kwargs)

    return wrapper


def get_host(request, pk: int, manage: bool = False, operate: bool = False) -> Host:
    host = get_object_or_404(Host, pk=pk)
    if manage and not can_manage_hosts(request.user):
        raise PermissionDenied("Only administrators can manage hosts.")
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can run a host's maintenance.")
    return host


def get_instance(request, pk: int, operate: bool = False, reveal: bool = False) -> Instance:
    """`reveal`: the caller shows a redacted config value in clear, which only
    administrators may ask for."""
    instance = get_object_or_404(Instance.objects.select_related("host"), pk=pk)
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can run operations.")
    if reveal and not can_manage_hosts(request.user):
        raise PermissionDenied("Only administrators can reveal a redacted value.")
    return instance


def get_operation(
    request, pk: int, operate: bool = False, without: tuple[str, ...] = ()
) -> Operation:
    """`without` names columns not to read (left deferred): the progress fragment, asked once
    a second by every open operation page, leaves out `result` (pre-flight checks and phases)."""
    if without:
        operation = row_by_pk(Operation, pk, without, *_with_host_servers())
        if operation is None:
            raise Http404("No operation matches the given query.")
    else:
        operation = get_object_or_404(Operation, pk=pk)
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can change operations.")
    return operation


def _with_host_servers() -> tuple:
    """row_by_pk's `extra` and `extra_params` reading the hosts' servers with the row (see
    Operation.server_names), or nothing on a database this does not know."""
    connection = connections[router.db_for_read(Operation)]
    quote = connection.ops.quote_name
    tables = quote(Operation._meta.db_table), quote(Host._meta.db_table)
    found = host_servers_sql(connection.vendor, *tables)
    if found is None:
        return ()
    sql, params = found
    return (HOST_SERVERS, sql), params


def get_plan(request, pk: int, operate: bool = False) -> MaintenancePlan:
    """Everyone signed in may read a maintenance plan; operators check it again and run it."""
    plan = get_object_or_404(
        MaintenancePlan.objects.select_related("host", "preflight", "operation", "requested_by"),
        pk=pk,
    )
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can run a host's maintenance.")
    return plan


def get_bundle(request, pk: int, download: bool = False) -> Bundle:
    """Everyone signed in may read a bundle's report and manifest (both redacted); the
    tarball itself, with whole host logs, is for operators and admins."""
    bundle = get_object_or_404(Bundle.objects.select_related("operation", "requested_by"), pk=pk)
    if download and not can_operate(request.user):
        raise PermissionDenied("Only operators and administrators can download bundles.")
    return bundle


def get_failure_group(request, pk: int, change: bool = False) -> FailureGroup:
    """Everyone signed in reads failure groups; operators file them and set their status,
    upstream bug and note."""
    group = get_object_or_404(FailureGroup, pk=pk)
    if change and not can_operate(request.user):
        raise PermissionDenied("Only operators can file failures or change their status and note.")
    return group
