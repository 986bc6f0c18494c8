from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from panel.models import Instance, Operation
from panel.operations.aftercare import copy_left
from panel.operations.requests import StrategyRefused, migration_fields
from panel.web.access import get_instance, get_operation
from panel.web.forms import MigrationForm
from panel.web.views.operations import queue_operation


def refuse(request: HttpRequest, instance: Instance, form: MigrationForm) -> HttpResponse:
    errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
    messages.error(request, f"Not started: {errors}")
    return redirect(reverse("instance-detail", kwargs={"pk": instance.pk}) + "#migrate")


@login_required
@require_POST
def migration_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Step one: run the pre-flight checks on both hosts and show them."""
    instance = get_instance(request, pk, operate=True)
    form = MigrationForm(request.POST, instance=instance)
    if not form.is_valid():
        return refuse(request, instance, form)
    fields = migration_fields(instance, form, resolve=False)
    return queue_operation(request, instance, Operation.Kind.PREFLIGHT, **fields)


@login_required
@require_POST
def migration_start(request: HttpRequest, pk: int) -> HttpResponse:
    """Step two, after the checks were shown: migrate with the chosen (or recommended) strategy."""
    instance = get_instance(request, pk, operate=True)
    form = MigrationForm(request.POST, instance=instance)
    if not form.is_valid():
        return refuse(request, instance, form)
    try:
        fields = migration_fields(instance, form, resolve=True)
    except StrategyRefused as refused:
        messages.error(request, f"Not started: {refused}")
        return redirect("instance-detail", pk=instance.pk)
    return queue_operation(request, instance, Operation.Kind.MIGRATE, **fields)


@login_required
@require_POST
def remove_left_copy(request: HttpRequest, pk: int) -> HttpResponse:
    """The one-click cleanup of a copy a migration left on the host where the container does
    not live (the source copy after a move, or a partial copy on the target)."""
    operation = get_operation(request, pk, operate=True)
    copy = copy_left(operation)
    if copy is None:
        messages.info(request, "There is no copy left behind any more.")
        return redirect("operation-detail", pk=operation.pk)
    params = {"stop_first": True, "left_by": operation.pk}
    return queue_operation(request, copy, Operation.Kind.DELETE_COPY, params=params)
