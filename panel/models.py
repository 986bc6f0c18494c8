"""The panel's records. LXD is the truth about containers; these rows are what the panel
learned from it, plus what only the panel knows (who asked, when, what happened)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

# LXD's own rule for names (instances, remotes): letters, digits and dashes, starting with a
# letter, not ending with a dash, at most 63 characters. Host names follow it too so that a
# host name can be used as an `lxc remote` name in the bug report.
lxd_name_validator = RegexValidator(
    r"^[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    "Use 1 to 63 letters, digits and dashes, starting with a letter and not ending with a dash.",
)


class Host(models.Model):
    """An LXD server the panel manages, reached over its unix socket or HTTPS."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Not contacted yet"
        ONLINE = "online", "Online"
        UNREACHABLE = "unreachable", "Unreachable"

    name = models.CharField(max_length=63, unique=True, validators=[lxd_name_validator])
    endpoint = models.CharField(
        max_length=255, help_text="A unix socket path or an https://address:port URL."
    )
    server_certificate = models.TextField(
        blank=True, help_text="The server certificate (PEM) pinned at first contact."
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.UNKNOWN)
    server_version = models.CharField(max_length=32, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="What LXD reported.")
    last_contact = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_local_socket(self) -> bool:
        return self.endpoint.startswith("/")

    def record_contact(self, facts: dict) -> None:
        """Store what LXD just told us about itself."""
        self.facts = facts
        self.server_version = facts.get("server_version", "")
        self.status = self.Status.ONLINE
        self.last_contact = timezone.now()
        self.last_error = ""
        self.save(update_fields=["facts", "server_version", "status", "last_contact", "last_error"])

    def record_failure(self, error: str) -> None:
        """Keep the last facts (they are still the best we know) but say the host is away."""
        self.status = self.Status.UNREACHABLE
        self.last_error = error
        self.save(update_fields=["status", "last_error"])
