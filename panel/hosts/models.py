"""The hosts the panel manages and what their LXD reported about them: the instances
(containers), their snapshots and log files. LXD is the truth; these rows are what the panel
learned from it."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from panel.hosts.capabilities import Capability, host_capabilities
from panel.lxd import Platform, certificate_fingerprint, platform_of
from panel.redaction import policy

# LXD's own rule for names (instances, remotes): letters, digits and dashes, starting with a
# letter, not ending with a dash, at most 63 characters. Host names follow it too so that a
# host name can be used as an `lxc remote` name in the bug report.
lxd_name_validator = RegexValidator(
    r"^[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    "Use 1 to 63 letters, digits and dashes, starting with a letter and not ending with a dash.",
)


class HostQuerySet(models.QuerySet):
    def enrolled(self) -> HostQuerySet:
        """Hosts that are part of the fleet (enrollment finished)."""
        return self.exclude(status=Host.Status.ENROLLING)


class Host(models.Model):
    """An LXD or Incus server the panel manages, reached over its unix socket or HTTPS."""

    class Status(models.TextChoices):
        ENROLLING = "enrolling", "Being added"
        UNKNOWN = "unknown", "Not contacted yet"
        ONLINE = "online", "Online"
        UNREACHABLE = "unreachable", "Unreachable"

    class Enrollment(models.TextChoices):
        FETCHING_CERTIFICATE = "fetching", "Fetching the server certificate"
        AWAITING_CONFIRMATION = "confirm", "Waiting for you to confirm the fingerprint"
        TRUSTING = "trusting", "Asking the server to trust the panel"
        FAILED = "failed", "Failed"
        DONE = "done", "Done"

    name = models.CharField(max_length=63, unique=True, validators=[lxd_name_validator])
    endpoint = models.CharField(
        max_length=255, help_text="A unix socket path or an https://address:port URL."
    )
    server_certificate = models.TextField(
        blank=True, help_text="The server certificate (PEM) pinned at first contact."
    )
    offered_certificate = models.TextField(
        blank=True, help_text="The certificate the server presented, not yet confirmed."
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.UNKNOWN)
    enrollment = models.CharField(max_length=16, choices=Enrollment, default=Enrollment.DONE)
    server_version = models.CharField(max_length=32, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="What LXD reported.")
    last_contact = models.DateTimeField(null=True, blank=True)
    last_sync = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    agent_seen_at = models.DateTimeField(
        null=True, blank=True, help_text="When this host's agent last answered."
    )
    agent_facts = models.JSONField(
        default=dict, blank=True, help_text="What the agent found: criu check, CPU flags, uname."
    )
    inventory_notes = models.JSONField(
        default=list, blank=True, help_text="What the last sync could not store as LXD said it."
    )

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_local_socket(self) -> bool:
        return self.endpoint.startswith("/")

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.server_certificate) if self.server_certificate else ""

    @property
    def offered_fingerprint(self) -> str:
        return certificate_fingerprint(self.offered_certificate) if self.offered_certificate else ""

    @property
    def platform(self) -> Platform:
        """LXD or Incus, as the server said (before trust: from its API extensions)."""
        return platform_of(self.facts)

    @property
    def capabilities(self) -> list[Capability]:
        """What LXD reported, refined by what the host's agent found (criu check, flags)."""
        return host_capabilities({**self.facts, **self.agent_facts}, https=not self.is_local_socket)

    def capability(self, key: str) -> Capability:
        return next(c for c in self.capabilities if c.key == key)

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
        self.last_error = policy().text(error)
        self.save(update_fields=["status", "last_error"])

    def record_enrollment_failure(self, error: str, secret: str = "") -> None:
        """`secret`: the trust password or token just tried, which the error must not quote."""
        self.enrollment = self.Enrollment.FAILED
        self.last_error = policy(known=[secret] if secret else []).text(error)
        self.save(update_fields=["enrollment", "last_error"])


class InstanceQuerySet(models.QuerySet):
    def present(self) -> InstanceQuerySet:
        return self.filter(gone_at__isnull=True)


class Instance(models.Model):
    """A container (or VM) as LXD last reported it; kept, marked gone, when it disappears."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=63)
    type = models.CharField(max_length=32, default="container")
    status = models.CharField(max_length=32, blank=True, db_index=True)
    architecture = models.CharField(max_length=32, blank=True)
    description = models.TextField(blank=True)
    ephemeral = models.BooleanField(default=False)
    stateful = models.BooleanField(default=False, help_text="Has saved state (stateful stop).")
    created_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    profiles = models.JSONField(default=list, blank=True)
    expanded_config = models.JSONField(default=dict, blank=True)
    expanded_devices = models.JSONField(default=dict, blank=True)
    state = models.JSONField(default=dict, blank=True, help_text="pid, processes, cpu, memory, net")
    ipv4 = models.CharField(max_length=255, blank=True, help_text="As `lxc list` shows it.")
    synced_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["name", "host__name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="one_instance_per_name_per_host")
        ]
        indexes = [models.Index(fields=["gone_at", "name"])]

    def __str__(self) -> str:
        return f"{self.host.name}:{self.name}"

    @property
    def is_running(self) -> bool:
        return self.status == "Running"


class Snapshot(models.Model):
    """A snapshot of an instance as LXD last reported it (TAKEN AT, EXPIRES AT, STATEFUL)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=63)
    created_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    stateful = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "name"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "name"], name="one_snapshot_per_name")
        ]

    def __str__(self) -> str:
        return f"{self.instance}/{self.name}"


class InstanceLog(models.Model):
    """A log file of an instance (lxc.log, CRIU dump/restore logs) fetched from LXD."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="logs")
    filename = models.CharField(max_length=255)
    content = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["filename"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "filename"], name="one_log_per_filename")
        ]

    def __str__(self) -> str:
        return f"{self.instance}: {self.filename}"


class ClientIdentity(models.Model):
    """The panel's own LXD client certificate, one for every process on every machine; its
    private key sealed (panel/hosts/identity.py), never shown."""

    name = models.CharField(max_length=32, unique=True, default="panel")
    certificate = models.TextField(help_text="PEM; what each host's trust store holds.")
    sealed_key = models.TextField(help_text="The private key, encrypted.")
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint[:16]})"
