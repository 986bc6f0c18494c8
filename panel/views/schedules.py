from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from panel.access import get_instance
from panel.forms import ScheduleForm
from panel.models import SnapshotSchedule


@login_required
@require_POST
def schedule_save(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(error for errors in form.errors.values() for error in errors)
        messages.error(request, f"Schedule not saved: {errors}")
        return redirect("instance-detail", pk=instance.pk)
    capability = instance.host.capability("stateful_snapshot")
    if not capability.allowed:
        messages.error(request, f"Schedule not saved: {capability.reason}")
        return redirect("instance-detail", pk=instance.pk)
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
    return redirect("instance-detail", pk=instance.pk)


@login_required
@require_POST
def schedule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    instance = get_instance(request, pk, operate=True)
    SnapshotSchedule.objects.filter(instance=instance).delete()
    messages.success(request, "Schedule removed; existing snapshots are kept.")
    return redirect("instance-detail", pk=instance.pk)
