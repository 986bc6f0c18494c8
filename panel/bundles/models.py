"""Bug-report bundles: the tarball of an operation or a container, with its manifest."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from panel.hosts.models import Instance
from panel.operations.models import Operation


def bundle_path(bundle: Bundle, filename: str) -> str:
    return f"bundles/{timezone.now():%Y/%m}/{filename}"


class Bundle(models.Model):
    """The bug-report tarball LXD's maintainers ask for, for an operation or a container:
    report.md and manifest.json at the top, every item from every host involved."""

    class Status(models.TextChoices):
        COLLECTING = "collecting", "Collecting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="bundles"
    )
    instance = models.ForeignKey(
        Instance, on_delete=models.SET_NULL, null=True, blank=True, related_name="bundles"
    )
    instance_name = models.CharField(max_length=63, blank=True)
    requested_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="bundles"
    )
    automatic = models.BooleanField(default=False, help_text="Made because an operation failed.")
    status = models.CharField(max_length=16, choices=Status, default=Status.COLLECTING)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker last started building it (runs.py)."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to=bundle_path, blank=True, max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    report = models.TextField(blank=True, help_text="report.md: ready to paste into a bug.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["operation"],
                condition=models.Q(automatic=True),
                name="one_automatic_bundle_per_operation",
            )
        ]

    def __str__(self) -> str:
        return f"bundle #{self.pk} ({self.instance_name})"


class StoredFile(models.Model):
    """A file kept in the database by `DatabaseStorage` (PANEL_FILE_STORAGE=database), so
    every web replica can serve what any worker wrote."""

    name = models.CharField(max_length=255, unique=True)
    content = models.BinaryField()
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name
