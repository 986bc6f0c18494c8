"""Who may do what, and the one access helper per object (404 first, then permission)."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from panel.models import Bundle, Host, Instance, Operation

OPERATORS_GROUP = "operators"


def can_manage_hosts(user) -> bool:
    return user.is_authenticated and (user.is_staff or user.is_superuser)


def can_operate(user) -> bool:
    """Operators (and admins) run operations; everyone else only looks."""
    if not user.is_authenticated:
        return False
    return can_manage_hosts(user) or user.groups.filter(name=OPERATORS_GROUP).exists()


def admin_required(view):
    """Host management is for administrators; anyone else gets 403, not a login loop."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not can_manage_hosts(request.user):
            raise PermissionDenied("Only administrators can manage hosts.")
        return view(request, *args, **kwargs)

    return wrapper


def get_host(request, pk: int, manage: bool = False) -> Host:
    host = get_object_or_404(Host, pk=pk)
    if manage and not can_manage_hosts(request.user):
        raise PermissionDenied("Only administrators can manage hosts.")
    return host


def get_instance(request, pk: int, operate: bool = False) -> Instance:
    instance = get_object_or_404(Instance.objects.select_related("host"), pk=pk)
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can run operations.")
    return instance


def get_operation(request, pk: int, operate: bool = False) -> Operation:
    operation = get_object_or_404(Operation, pk=pk)
    if operate and not can_operate(request.user):
        raise PermissionDenied("Only operators can change operations.")
    return operation


def get_bundle(request, pk: int, download: bool = False) -> Bundle:
    """Everyone signed in may read a bundle's report and manifest (both redacted); the
    tarball itself, with whole host logs, is for operators and admins."""
    bundle = get_object_or_404(Bundle.objects.select_related("operation", "requested_by"), pk=pk)
    if download and not can_operate(request.user):
        raise PermissionDenied("Only operators and administrators can download bundles.")
    return bundle
