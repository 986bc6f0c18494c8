"""Who may do what, and the one access helper per object (404 first, then permission)."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from panel.models import Host, Instance


def can_manage_hosts(user) -> bool:
    return user.is_authenticated and (user.is_staff or user.is_superuser)


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


def get_instance(request, pk: int) -> Instance:
    return get_object_or_404(Instance.objects.select_related("host"), pk=pk)
