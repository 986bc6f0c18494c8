"""Operations on containers (snapshot, restore, stop, migrate...), their timelines, and the
schedules that request them. Only panel/operations/lifecycle.py changes an operation's status."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone

from panel.hosts.models import Host, Instance
from panel.lxd.platforms import Platform, platform_named
from panel.redaction import policy


class OperationQuerySet(models.QuerySet):
    def active(self) -> OperationQuerySet:
        return self.filter(status__in=Operation.ACTIVE)

    def failed(self) -> OperationQuerySet:
        return self.filter(status__in=(Operation.Status.FAILED, Operation.Status.INTERRUPTED))

    def ended_between(self, start, end) -> OperationQuerySet:
        return self.filter(finished_at__gt=start, finished_at__lte=end)


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
        # A host action (panel/maintenance/): its pre-flight, and the parent operation whose
        # children are ordinary operations of the kinds above, one per container.
        MAINTENANCE_PLAN = "maintenance_plan", "Maintenance pre-flight"
        MAINTENANCE = "maintenance", "Host maintenance"
        RELEASE_DUMP = "release_dump", "Free from a stuck CRIU dump"

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
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        help_text="The host maintenance this operation is one container's part of.",
    )
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING, db_index=True)
    stage = models.CharField(max_length=64, blank=True)
    progress_text = models.CharField(max_length=500, blank=True)
    progress_fraction = models.FloatField(null=True, blank=True)
    lxd_operation_ids = models.JSONField(default=list, blank=True)
    claim_token = models.CharField(
        max_length=32, blank=True, help_text="Set by the worker that claimed it; lifecycle.py."
    )
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
            ),
            models.UniqueConstraint(
                fields=["source_host"],
                condition=models.Q(kind="maintenance", status__in=["pending", "running"]),
                name="one_active_maintenance_per_host",
                violation_error_message="This host already has a maintenance under way.",
            ),
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

    @property
    def server_names(self) -> str:
        """Which servers ran it, for the UI's words: 'LXD', 'Incus' or 'LXD and Incus'."""
        platforms = self._platforms_read_with_row()
        if platforms is None:
            hosts = [host for host in (self.source_host, self.target_host) if host is not None]
            platforms = [host.platform for host in hosts]
        names = sorted({platform.name for platform in platforms}, key=["LXD", "Incus"].index)
        return " and ".join(names) or "LXD"

    def _platforms_read_with_row(self) -> list[Platform] | None:
        """The hosts' platforms from the HOST_SERVERS column the progress fragment reads
        with the row (loading a Host for its name cost more than the rest of a poll), or
        None where it was not read or a host's facts do not name their server."""
        servers = self.__dict__.get(HOST_SERVERS)
        if servers is None or UNNAMED_SERVER in servers.split(","):
            return None
        return [platform_named(key) for key in servers.split(",") if key]

    def log(self, message: str, stage: str = "") -> None:
        """Add a line to the operation's timeline (redacted: viewers read timelines)."""
        self.events.create(stage=stage or self.stage, message=self.redacted(message)[:2000])

    def redacted(self, text: str) -> str:
        """Text as it may be stored and shown: LXD's and CRIU's words can quote the
        container's config, so every error, outcome, progress and timeline line passes the
        policy, knowing the container's secret values (panel/redaction.py)."""
        redactor = getattr(self, "_redactor", None)
        if redactor is None:
            instance = self.instance if self.instance_id else None
            redactor = self._redactor = policy(instance.expanded_config if instance else None)
        return redactor.text(text)

    # What the work read from LXD about the container, per (host id, name on that host): the
    # lifecycle writes it into the Instance rows in the transaction that ends the operation.
    # Only reads made since the operation's last LXD action count (`forget_observations`).
    def observe(self, host_id: int, name: str, summary: dict | None, read_at: dt.datetime):
        self.observations()[(host_id, name)] = (summary, read_at)

    def observations(self) -> dict[tuple[int, str], tuple[dict | None, dt.datetime]]:
        return self.__dict__.setdefault("_observed", {})

    def forget_observations(self) -> None:
        self.observations().clear()

    # Work that needs a host reads it through these: the column is NULL only once the host
    # was removed from the panel, and the error then says so.
    def known_source_host(self) -> Host:
        if self.source_host is None:
            raise ValueError(f"Operation {self.pk} has no source host (removed from the panel).")
        return self.source_host

    def known_target_host(self) -> Host:
        if self.target_host is None:
            raise ValueError(f"Operation {self.pk} has no target host (removed from the panel).")
        return self.target_host


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


class PanelSnapshot(models.Model):
    """A snapshot the panel itself took, remembered apart from the Snapshot rows (every sync
    rebuilds those from LXD), so a schedule's retention deletes only the snapshots it made,
    never one a user named `auto-...` by hand. LXD's creation time tells a same-named later
    snapshot apart."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63)
    created_at = models.DateTimeField(null=True, blank=True, help_text="As LXD reported it.")
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    scheduled = models.BooleanField(default=False, help_text="Taken by the container's schedule.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instance", "name"], name="one_panel_snapshot_per_name")
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}/{self.name} (by operation #{self.operation_id})"

    def matches(self, reported: dict) -> bool:
        """Whether LXD's snapshot (name, created_at) is this one, not a later namesake."""
        if reported["name"] != self.name:
            return False
        if self.created_at is None or reported.get("created_at") is None:
            return True  # recorded before creation times were kept: the name decides
        return abs((reported["created_at"] - self.created_at).total_seconds()) < 1


class SnapshotSchedule(models.Model):
    """Stateful snapshots of one container on a fixed interval, keeping the newest few.

    LXD's own `snapshots.schedule` takes only stateless snapshots; this one runs each
    snapshot as an ordinary Operation, so it is watched, verified and reported like any.
    """

    PREFIX = "auto-"  # names only: what a schedule made is recorded as a PanelSnapshot

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


# The progress fragment reads its operation with both hosts' `server` fact
# (panel/rows.py), as "lxd,incus": empty for no host, UNNAMED_SERVER for a host whose facts
# do not say (before trust; then `server_names` loads the hosts).
HOST_SERVERS = "host_servers"
UNNAMED_SERVER = "?"


def host_servers_sql(vendor: str, operations: str, hosts: str) -> tuple[str, tuple] | None:
    """SQL for HOST_SERVERS on a row of `operations` (quoted table names), and its
    parameters; None on a database whose JSON operator is not known here. The JSON key is
    read with each database's own operator."""
    if vendor == "postgresql":
        server, key = f"{hosts}.facts ->> %s", "server"
    elif vendor == "sqlite":
        server, key = f"json_extract({hosts}.facts, %s)", "$.server"
    else:
        return None

    def one(column: str) -> str:
        return (  # identifiers are the models' own; the key and the marker are parameters
            f"COALESCE((SELECT {server} FROM {hosts} WHERE {hosts}.id = {operations}.{column}),"  # noqa: S608
            f" CASE WHEN {operations}.{column} IS NULL THEN '' ELSE %s END)"
        )

    sql = f"({one('source_host_id')} || ',' || {one('target_host_id')})"
    return sql, (key, UNNAMED_SERVER, key, UNNAMED_SERVER)
