"""The panel's records. LXD is the truth about containers; these rows are what the panel
learned from it, plus what only the panel knows (who asked, when, what happened)."""

from __future__ import annotations

import datetime as dt

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from panel.capabilities import Capability, host_capabilities
from panel.lxd import certificate_fingerprint

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
    """An LXD server the panel manages, reached over its unix socket or HTTPS."""

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
        self.last_error = error
        self.save(update_fields=["status", "last_error"])

    def record_enrollment_failure(self, error: str) -> None:
        self.enrollment = self.Enrollment.FAILED
        self.last_error = error
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


class OperationQuerySet(models.QuerySet):
    def active(self) -> OperationQuerySet:
        return self.filter(status__in=Operation.ACTIVE)


class Operation(models.Model):
    """One piece of work on a container (snapshot, restore, stop, migrate...) and its outcome.

    The database is the source of truth: LXD forgets finished operations after seconds,
    Celery's result backend is not used, and these rows are kept forever.
    """

    class Kind(models.TextChoices):
        SNAPSHOT = "snapshot", "Snapshot"
        STATEFUL_SNAPSHOT = "stateful_snapshot", "Stateful snapshot"
        RESTORE = "restore", "Restore snapshot"
        DELETE_SNAPSHOT = "delete_snapshot", "Delete snapshot"
        START = "start", "Start"
        STOP = "stop", "Stop"
        RESTART = "restart", "Restart"
        STATEFUL_STOP = "stateful_stop", "Stateful stop"
        START_FRESH = "start_fresh", "Start without saved state"
        PREFLIGHT = "preflight", "Migration pre-flight"
        MIGRATE = "migrate", "Migrate"
        DELETE_COPY = "delete_copy", "Remove a stopped copy"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    kind = models.CharField(max_length=32, choices=Kind)
    instance = models.ForeignKey(
        Instance, on_delete=models.SET_NULL, null=True, related_name="operations"
    )
    instance_name = models.CharField(max_length=63, help_text="Kept when the row is gone.")
    target_name = models.CharField(max_length=63, blank=True, help_text="Name on the target.")
    source_host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, null=True, related_name="operations_from"
    )
    target_host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, null=True, blank=True, related_name="operations_to"
    )
    requested_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="operations"
    )
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING, db_index=True)
    stage = models.CharField(max_length=64, blank=True)
    progress_text = models.CharField(max_length=500, blank=True)
    progress_fraction = models.FloatField(null=True, blank=True)
    lxd_operation_ids = models.JSONField(default=list, blank=True)
    may_cancel = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="The error as LXD gave it.")
    outcome = models.TextField(blank=True, help_text="What happened, in plain words.")
    container_state_after = models.CharField(max_length=200, blank=True)
    downtime_seconds = models.FloatField(
        null=True, blank=True, help_text="How long the container was not running anywhere."
    )
    result = models.JSONField(
        default=dict, blank=True, help_text="Checks, strategy, phases and measurements."
    )

    objects = OperationQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance"],
                condition=models.Q(status__in=["pending", "running"]),
                name="one_active_operation_per_instance",
                violation_error_message="This container already has an active operation.",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} {self.instance_name}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration(self) -> dt.timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def log(self, message: str, stage: str = "") -> None:
        """Add a line to the operation's timeline."""
        self.events.create(stage=stage or self.stage, message=message[:2000])


class OperationEvent(models.Model):
    """One line of an operation's timeline: a stage entered, a fact learned, an error."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    stage = models.CharField(max_length=64, blank=True)
    message = models.TextField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.stage}: {self.message[:60]}"


class SnapshotSchedule(models.Model):
    """Stateful snapshots of one container on a fixed interval, keeping the newest few.

    LXD's own `snapshots.schedule` takes only stateless snapshots; this one runs each
    snapshot as an ordinary Operation, so it is watched, verified and reported like any.
    """

    PREFIX = "auto-"

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="schedule")
    every_minutes = models.PositiveIntegerField()
    keep = models.PositiveIntegerField(help_text="How many scheduled snapshots to keep.")
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(db_index=True)
    last_operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.instance}: every {self.every_minutes} min, keep {self.keep}"

    def advance(self, now: dt.datetime) -> None:
        """Move next_run_at past `now` on the fixed cadence (runs missed while down are
        skipped, not piled up)."""
        interval = dt.timedelta(minutes=self.every_minutes)
        while self.next_run_at <= now:
            self.next_run_at += interval


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
    finished_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to=bundle_path, blank=True, max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    report = models.TextField(blank=True, help_text="report.md: ready to paste into a bug.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"bundle #{self.pk} ({self.instance_name})"


class AuditEvent(models.Model):
    """Who did what, on which object, when, from where, and how it ended. Kept forever, and
    readable when the user or the object is gone (names are copied, not only linked)."""

    class Outcome(models.TextChoices):
        OK = "ok", "Done"
        REFUSED = "refused", "Refused"
        FORBIDDEN = "forbidden", "Forbidden"
        FAILED = "failed", "Failed"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, db_index=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'anonymous'} {self.action}"


class ApiToken(models.Model):
    """A user's token for the JSON API. Only its SHA-256 is stored; the token itself is
    shown once, when it is made. It acts with its user's role."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=12, help_text="The token's first characters, to tell it apart."
    )
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.prefix}…)"
