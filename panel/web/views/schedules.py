from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from panel.models import SnapshotSchedule
from panel.operations.kinds import checkpoint_capability
from panel.web.access import AuthenticatedHttpRequest, get_instance
from panel.web.forms import ScheduleForm
from panel.web.views.instances import tab_url


@login_required
@require_POST
def schedule_save(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
        messages.error(request, f"Schedule not saved: {errors}")
        return redirect(tab_url(instance, "snapshots"))
    capability = checkpoint_capability(instance.host)
    if not capability.allowed:
        messages.error(request, f"Schedule not saved: {capability.reason}")
        return redirect(tab_url(instance, "snapshots"))
    every = form.cleaned_data["every_minutes"]
    SnapshotSchedule.objects.update_or_create(
        instance=instance,
        defaults={
            "every_minutes": every,
            "keep": form.cleaned_data["keep"],
            "enabled": True,
            "next_run_at": timezone.now() + dt.timedelta(minutes=every),
            "created_by": request.user,
        },
    )
    messages.success(request, f"Stateful snapshots every {every} min are scheduled.")
    return redirect(tab_url(instance, "snapshots"))


@login_required
@require_POST
def schedule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    SnapshotSchedule.objects.filter(instance=instance).delete()
    messages.success(request, "Schedule removed; existing snapshots are kept.")
    return redirect(tab_url(instance, "snapshots"))
