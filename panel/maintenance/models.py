"""A host's maintenance: its maintenance mode (who set it, when, why), and the plans of the
host actions (checkpoint in place, evacuate, bring back) shown before anything starts."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from panel.hosts.models import Host
from panel.operations.models import Operation


class HostMaintenance(models.Model):
    """A host in maintenance mode: while this row exists no new operation or migration
    targets the host, and its scheduled snapshots are paused."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, related_name="maintenance_mode")
    set_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    set_by_name = models.CharField(max_length=150, help_text="Kept when the user is gone.")
    set_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=500)

    def __str__(self) -> str:
        return f"{self.host.name} in maintenance since {self.set_at:%Y-%m-%d %H:%M}"

    def describe(self) -> str:
        """One sentence: who set it, when, and why."""
        when = timezone.localtime(self.set_at)
        return (
            f"{self.host.name} is in maintenance mode, set by {self.set_by_name or 'someone'} "
            f"on {when:%Y-%m-%d at %H:%M}: {self.reason}"
        )


class MaintenancePlan(models.Model):
    """What one host action would do to each of the host's containers: drawn up by a worker
    from what LXD says now (the pre-flight), shown, and run only once someone confirms it."""

    class Mode(models.TextChoices):
        CHECKPOINT = "checkpoint", "Checkpoint in place"
        EVACUATE = "evacuate", "Evacuate to other hosts"
        BRING_BACK = "bring_back", "Bring back"

    class Policy(models.TextChoices):
        """What to do with a running container that cannot be checkpointed or moved."""

        STOP = "stop", "Stop it cleanly"
        LEAVE = "leave", "Leave it running"
        COLD = "cold", "Move it cold (its processes restart)"

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="maintenance_plans")
    mode = models.CharField(max_length=16, choices=Mode)
    policy = models.CharField(max_length=8, choices=Policy, default=Policy.STOP)
    choices = models.JSONField(
        default=dict, blank=True, help_text="The admin's choices: targets per container, skips."
    )
    requested_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    preflight = models.OneToOneField(
        Operation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="drawn_plan",
        help_text="The worker's operation that drew the plan up.",
    )
    items = models.JSONField(default=list, blank=True, help_text="One entry per container.")
    summary = models.TextField(blank=True)
    reverses = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="brought_back_by",
        help_text="For a bring back: the checkpoint or evacuation it undoes.",
    )
    operation = models.OneToOneField(
        Operation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="maintenance_plan",
        help_text="The parent operation, once the plan was confirmed.",
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"plan #{self.pk}: {self.get_mode_display().lower()} {self.host.name}"

    @property
    def state(self) -> str:
        """drawing, failed, ready or confirmed."""
        if self.operation_id is not None:
            return "confirmed"
        preflight = self.preflight
        if preflight is None or preflight.status == Operation.Status.SUCCEEDED:
            return "ready"
        return "drawing" if preflight.is_active else "failed"

    def actions(self) -> list[dict]:
        """The items that become a child operation when the plan runs."""
        return [item for item in self.items if item.get("action")]
