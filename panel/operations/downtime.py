"""Where a migration's time goes (the timeline), and how long the container did not run.

Downtime of a live migration comes from CRIU's dump log: freezing the cgroup to "Unfreezing
tasks", which CRIU does only once LXD's post-dump action script returns, after the target has
restored. The panel asks LXD to make the first filesystem copy without freezing the container
(transfer.UNFROZEN_FIRST_COPY); where LXD cannot, its freeze for that copy is observed and
added. LXD reports the container Running while CRIU holds it, so the panel's own observation,
kept beside CRIU's figure as a cross-check, starts when LXD's operation for CRIU's dump
appears on the source (or, where LXD froze for the first copy, at the first Freezing or
Frozen sample) and ends at the first sample of the container Running on the target. Without
the log (a missed fetch), the observation is the figure; for the other strategies it is
always observed.
"""

from __future__ import annotations

import re
import time

from panel import lxd
from panel.hosts.inventory import fetch_logs
from panel.operations import lifecycle
from panel.operations.models import Operation
from panel.operations.runner import Tracker
from panel.operations.stuck import DUMP_OPERATION

# With an unfrozen first copy LXD reports the container Running all along, so the appearance
# of the dump's operation (DUMP_OPERATION) is what the panel observes as the start of the
# downtime.
# CRIU logs seconds since it started. The freeze begins when it freezes the cgroup (or, if
# that line is missing, when it seizes the first task) and ends when it unfreezes the tasks.
FREEZER = re.compile(r"^\((\d+\.\d+)\) (freezer\.state=FREEZING|freezing cgroup|Seized task)")
UNFREEZE = re.compile(r"^\((\d+\.\d+)\) Unfreezing tasks")


class Timeline:
    """Bookkeeping of where the time went, for the timeline chart."""

    # The phases during which the container runs somewhere; in all others it runs nowhere.
    RUNNING_PHASES = (
        "transfer (running)",
        "finishing (running on the target)",
        "clean up",
        "clean up: LXD still stopping the source",
        "clean up: delete",
    )

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phases: list[dict] = []

    def phase(self, name: str, start: float, end: float) -> None:
        self.phases.append(
            {
                "name": name,
                "start": round(start - self.started, 3),
                "end": round(end - self.started, 3),
                "duration": round(end - start, 3),
                "down": name not in self.RUNNING_PHASES,
            }
        )

    def total_seconds(self) -> float:
        return round(time.monotonic() - self.started, 3)


class DowntimeWatch:
    """The moments a migrating container stopped running and ran again on the target: set
    by the strategy's steps (a stop, a start) or sampled during a live transfer."""

    def __init__(self, operation: Operation, source: Tracker, target: Tracker, unfrozen: bool):
        self.operation = operation
        self.source, self.target = source, target
        self.name, self.new_name = operation.instance_name, operation.target_name
        self.unfrozen_first_copy = unfrozen
        self.start: float | None = None
        self.end: float | None = None
        self.target_running_at: float | None = None
        self.dumps_before: set[str] = set()  # other migrations' dumps already on the source
        # Another migration from the same host may start its dump at the same time, and LXD
        # does not say whose dump an operation is: then no observation is recorded.
        self.observation_shared = False
        self.first_freeze_from: float | None = None  # LXD froze for the first copy (old LXD)
        self.first_freeze: float | None = None  # ... for this long, as sampled
        self.dump_operations: list[str] = []  # this migration's dump on the source (stuck.py)
        self.source_silent = False  # the source's LXD stopped answering: no more samples

    def expect_dump(self) -> None:
        """Before a live transfer: the dumps already running on the source are not this
        migration's (kept on the row, for the reconciler, should the worker die)."""
        self.dumps_before = lxd.running_operations(self.source.target, DUMP_OPERATION)
        self.operation.result["dumps_before"] = sorted(self.dumps_before)
        self.observation_shared = (
            Operation.objects.active()
            .filter(kind=Operation.Kind.MIGRATE, source_host=self.operation.source_host_id)
            .exclude(pk=self.operation.pk)
            .exists()
        )

    def sampling(self, watch_freeze: bool) -> bool:
        """Still watching for the downtime's start or end (it ends when the target runs)."""
        return watch_freeze and self.target_running_at is None

    def source_went_silent(self, error: str) -> None:
        """Sampling the source failed: from now on only the target is watched."""
        if not self.source_silent:
            self.source_silent, self.observation_shared = True, True
            self.start = self.start or time.monotonic()
            self.first_freeze_from = None
            self.operation.log(f"The source's LXD does not answer ({error}).", "transferring")

    def sample(self) -> None:
        if self.start is None:
            self.notice_freeze()
        elif self.first_freeze_from is not None:
            self.notice_thaw()
        else:
            self.notice_target_running()

    def notice_target_running(self) -> None:
        """The downtime ends when the container runs on the target: LXD's target operation
        ends a little later (0.01 s on the lab), while LXD finishes on both sides."""
        if lxd.instance_status(self.target.target, self.new_name) != "Running":
            return
        self.target_running_at = time.monotonic()
        self.operation.result["target_seen_running"] = True
        lifecycle.save_result(self.operation)
        self.target.enter(
            "finishing",
            f"The container runs on {self.operation.known_target_host().name}; LXD is "
            "finishing the migration.",
        )

    def notice_freeze(self) -> None:
        """The downtime starts when the container stops running. With an unfrozen first copy
        that is CRIU's dump, whose LXD operation appearing marks it (LXD says Running all
        along). Otherwise LXD first freezes the container for the first copy (Freezing, then
        Frozen for a few tenths of a second, then Running again, also while CRIU holds it)."""
        if self.unfrozen_first_copy:
            dumps = lxd.running_operations(self.source.target, DUMP_OPERATION) - self.dumps_before
            if not dumps:
                return
            self.observation_shared |= len(dumps) > 1
            self.dump_operations = sorted(dumps)
            self.operation.result["dump_operations"] = self.dump_operations
            lifecycle.save_result(self.operation)
            words = "The container is frozen: CRIU is checkpointing it."
        elif lxd.instance_status(self.source.target, self.name) in ("Freezing", "Frozen"):
            self.first_freeze_from = time.monotonic()
            words = "LXD froze the container to copy its filesystem; CRIU checkpoints it next."
        else:
            return
        self.start = time.monotonic()
        # The row's stage too: the page, the API and the reconciler see that CRIU holds it.
        self.source.enter("checkpointing", words)
        self.source.record_progress("frozen: checkpointing and restoring")

    def notice_thaw(self) -> None:
        """LXD's freeze for the first copy ends when LXD says anything else again."""
        began = self.first_freeze_from
        if began is None or lxd.instance_status(self.source.target, self.name) in (
            "Freezing",
            "Frozen",
        ):
            return
        self.first_freeze = round(time.monotonic() - began, 3)
        self.first_freeze_from = None

    def record(self, strategy: str, timeline: Timeline) -> None:
        """Keep the dump log (it goes away with the source copy) and the measured downtime
        (see `downtime_figure`), with the panel's own observation as a cross-check."""
        frozen = None
        if strategy == "live" and self.operation.instance is not None:
            fetch_logs(self.operation.instance, self.source.target)
            frozen = criu_frozen_seconds(self.operation.instance)
        observed = None
        if self.start is not None and self.end is not None and not self.observation_shared:
            observed = round(self.end - self.start, 3)
        self.operation.downtime_seconds, source = downtime_figure(
            frozen, self.first_freeze, observed
        )
        self.operation.result.update(
            phases=timeline.phases,
            criu_frozen_seconds=frozen,
            observed_downtime_seconds=observed,
            first_copy_freeze_seconds=self.first_freeze,
            downtime_source=source,
        )


def downtime_figure(
    frozen: float | None, first_freeze: float | None, observed: float | None
) -> tuple[float | None, str]:
    """A live migration's downtime and where it comes from. CRIU's frozen interval covers the
    whole time the container was not running, plus LXD's freeze for the first copy where
    LXD made one (sampled, so to 0.1 s). Without CRIU's figure (another strategy, or the log
    was not read), the panel's observation is all there is."""
    if frozen is None:
        if observed is None:
            return None, "not measured"
        return observed, "the panel's observation of LXD's states"
    if first_freeze:
        return round(frozen + first_freeze, 3), (
            f"CRIU's dump log, plus LXD's freeze for its first copy ({first_freeze:.2f} s, "
            "observed)"
        )
    return frozen, "CRIU's dump log"


def criu_frozen_seconds(instance) -> float | None:
    """The frozen interval in the newest migration dump log: FREEZING to 'Unfreezing tasks'."""
    logs = [log for log in instance.logs.all() if log.filename.startswith("migration_dump_")]
    if not logs:
        return None
    text = max(logs, key=lambda log: log.filename).content
    start = next((float(m.group(1)) for m in map(FREEZER.match, text.splitlines()) if m), None)
    end = next((float(m.group(1)) for m in map(UNFREEZE.match, text.splitlines()) if m), None)
    return round(end - start, 3) if start is not None and end is not None else None
