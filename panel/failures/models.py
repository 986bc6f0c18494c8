"""Failure groups: failed and interrupted operations grouped by the cause they share (the
fingerprint, panel/failures/fingerprint.py), with what the team knows about that cause:
its status, the upstream bug, a note. Only panel/failures/grouping.py adds failures to a
group; panel/failures/requests.py changes what the team says about one."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from panel.bundles.models import Bundle
from panel.operations.models import Operation


class FailureGroup(models.Model):
    """Every failure with one fingerprint: how often, where, and what the team did about it."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        FILED = "filed", "Filed upstream"
        FIXED = "fixed", "Fixed upstream"
        IGNORED = "ignored", "Ignored"

    class Component(models.TextChoices):
        CRIU = "criu", "CRIU"
        LXD = "lxd", "LXD"
        INCUS = "incus", "Incus"
        PANEL = "panel", "The panel or its surroundings"

    fingerprint = models.CharField(max_length=64, unique=True)
    signature = models.JSONField(default=dict, help_text="The normalised parts hashed.")
    title = models.CharField(max_length=300)
    kind = models.CharField(max_length=32, choices=Operation.Kind, db_index=True)
    component = models.CharField(max_length=16, choices=Component)
    status = models.CharField(max_length=16, choices=Status, default=Status.NEW, db_index=True)
    status_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status_by_name = models.CharField(
        max_length=150, blank=True, help_text="Kept when the user is gone; empty: the panel."
    )
    status_at = models.DateTimeField(default=timezone.now)
    status_reason = models.CharField(max_length=300, blank=True)
    upstream_url = models.URLField(max_length=500, blank=True)
    upstream_by_name = models.CharField(max_length=150, blank=True)
    upstream_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="What was tried; the workaround.")
    note_by_name = models.CharField(max_length=150, blank=True)
    note_at = models.DateTimeField(null=True, blank=True)
    hosts = models.JSONField(
        default=dict, help_text="{host: {platform, os, kernel, criu, count, last_seen}}."
    )
    count = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-last_seen", "-pk"]

    def __str__(self) -> str:
        return f"failure group #{self.pk}: {self.title[:80]}"

    @property
    def platforms(self) -> list[str]:
        return sorted({facts["platform"] for facts in self.hosts.values()})

    def latest_bundle(self, ready: bool = False) -> Bundle | None:
        bundles = Bundle.objects.filter(operation__failure__group=self)
        if ready:
            bundles = bundles.filter(status=Bundle.Status.READY)
        return bundles.order_by("-created_at", "-pk").first()

    def operations(self) -> models.QuerySet[Operation]:
        return Operation.objects.filter(failure__group=self).order_by("-finished_at", "-pk")


class GroupedFailure(models.Model):
    """One failed or interrupted operation in its group, and whether it opened the group
    (the first of its kind, or failing again after the group was marked fixed)."""

    class Opened(models.TextChoices):
        NO = "", "No"
        NEW = "new", "A new group"
        REGRESSED = "regressed", "Reopened a fixed group"

    operation = models.OneToOneField(Operation, on_delete=models.CASCADE, related_name="failure")
    group = models.ForeignKey(FailureGroup, on_delete=models.CASCADE, related_name="failures")
    at = models.DateTimeField(default=timezone.now)
    opened = models.CharField(max_length=16, choices=Opened, default=Opened.NO, blank=True)
    hosts = models.JSONField(
        default=list, help_text="[{name, platform, criu}] of each host, as they were then."
    )

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"operation #{self.operation_id} in group #{self.group_id}"
