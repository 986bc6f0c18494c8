"""One transfer of a container from the source to the target: LXD's migration API, pull mode
first (the target connects to the source), push mode when the target cannot reach the source.
A live transfer is also where the downtime is sampled (panel/operations/downtime.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings

from panel import lxd
from panel.operations import lifecycle
from panel.operations.recovery import remove_partial_target, settle_source, target_failed

if TYPE_CHECKING:
    from panel.operations.migration import Migration

# A live migration copies the root filesystem twice: once while the container runs, then again
# (only what changed) while CRIU holds it frozen. For the first copy LXD 5.0.2 also freezes
# the container (dir pools), unless asked with `allow_inconsistent`: that freeze is downtime
# CRIU's log does not show (0.17 s on the lab), and liblxc's cgroup v1 freeze polls once a
# second, so about one run in three it lasted 1.17 s and the whole migration took 1 s longer.
# The final copy is made while CRIU holds the tasks and sends what changed since the first
# (rsync's size-and-mtime check, as without the flag), so the first copy only has to be good
# enough to shorten the second. LXD's own client checks this extension before sending it.
UNFROZEN_FIRST_COPY = "cluster_migration_inconsistent_copy"
SAMPLE_INTERVAL = 0.1  # seconds between status samples while a transfer runs
CONNECTION_TROUBLE = (
    "dial tcp",
    "connection refused",
    "no route to host",
    "i/o timeout",
    "network is unreachable",
)


class ConnectionTrouble(Exception):
    """The target could not connect to the source (pull mode): try push mode."""


class Transfer:
    """Moves the container (running, for a live transfer) and records the phases."""

    def __init__(self, migration: Migration) -> None:
        self.migration = migration
        self.source, self.target = migration.source, migration.target
        self.downtime = migration.downtime
        self.live = False
        self.cancel_checked, self.cancel_sent, self.told_not_cancellable = 0.0, False, False

    def run(self, live: bool, watch_freeze: bool = False) -> None:
        m = self.migration
        self.live = live
        begin = time.monotonic()
        self.source.enter(
            "transferring",
            f"Moving {m.name} to {m.target_host.name}"
            + (" live (CRIU)." if live else " (stopped)."),
        )
        # A live transfer follows the checks at once: the definition they read is current.
        # Otherwise the container was stopped since, so it is read again.
        definition = m.checked_definition if live else None
        definition = definition or lxd.instance_definition(self.source.target, m.name)
        try:
            self.pull_or_push(definition, live, watch_freeze, mode="pull")
        except ConnectionTrouble as trouble:
            m.operation.log(
                f"The target could not reach the source ({trouble}); retrying in push mode.",
                "transferring",
            )
            self.pull_or_push(definition, live, watch_freeze, mode="push")
        end = time.monotonic()  # the target's operation has just ended
        if live:
            frozen_at = self.downtime.start or begin
            running_at = self.downtime.target_running_at or end
            m.timeline.phase("transfer (running)", begin, frozen_at)
            m.timeline.phase("frozen: checkpoint, transfer, restore", frozen_at, running_at)
            if running_at < end:
                m.timeline.phase("finishing (running on the target)", running_at, end)
            self.downtime.end = running_at
        else:
            m.timeline.phase("transfer (stopped)", begin, end)

    def pull_or_push(self, definition: dict, live: bool, watch_freeze: bool, mode: str) -> None:
        m = self.migration
        source_target, target_target = self.source.target, self.target.target
        pool = m.params.get("pool", "")
        platforms = (m.source_host.platform, m.target_host.platform)
        unfrozen = live and self.downtime.unfrozen_first_copy
        if live:  # the dumps already running are not this migration's (panel/operations/stuck.py)
            self.downtime.expect_dump()
        if mode == "pull":
            source_op, secrets = lxd.start_migration_source(
                source_target, m.name, live, unfrozen_first_copy=unfrozen
            )
            m.source_op = source_op
            self.source.remember(source_op)
            origin = {"mode": "pull", **lxd.migration_peer(source_target, source_op, secrets)}
            body = lxd.migration_target_body(definition, m.new_name, live, pool, origin, platforms)
            target_op, _ = lxd.start_migration_target(target_target, body)
            self.target.remember(target_op)
        else:
            push = {"mode": "push"}
            body = lxd.migration_target_body(definition, m.new_name, live, pool, push, platforms)
            target_op, secrets = lxd.start_migration_target(target_target, body)
            self.target.remember(target_op)
            push_to = lxd.migration_peer(target_target, target_op, secrets)
            source_op, _ = lxd.start_migration_source(
                source_target, m.name, live, push_to, unfrozen_first_copy=unfrozen
            )
            m.source_op = source_op
            self.source.remember(source_op)
        self.follow(source_op, target_op, watch_freeze, mode)

    def follow(self, source_op: str, target_op: str, watch_freeze: bool, mode: str) -> None:
        """Follow both ends until the target's operation ends, sampling the source status
        to catch the freeze, and copying `fs_progress` from whichever end reports it. A
        silent target is asked again for up to the peer wait (it may come back and finish);
        a silent source is no longer sampled (the target's side fails or finishes without
        it). Past that wait the LXDUnreachable goes to the migration, which settles it."""
        m, downtime = self.migration, self.downtime
        deadline = time.monotonic() + settings.OPERATION_TIMEOUT_SECONDS
        while True:
            try:
                target_state = self.poll(target_op, watch_freeze)
            except lxd.LXDUnreachable as silence:
                if silence.endpoint == self.source.target.endpoint:
                    downtime.source_went_silent(str(silence))
                    continue
                if self.target.patience.silent(silence):
                    continue
                raise
            self.target.patience.answered()
            if target_state is None or target_state.finished:
                break
            self.source.record_progress(target_state.progress_text, self.cancellable())
            self.honour_cancel(source_op)
            if time.monotonic() > deadline:
                raise target_failed(m, source_op, target_op, "the migration timed out")
            if downtime.sampling(watch_freeze):  # not once the target runs: wait on LXD
                time.sleep(SAMPLE_INTERVAL)
        if self.cancel_sent and (target_state is None or target_state.status != "Success"):
            raise m.cancelled("during the transfer")
        if target_state is None:
            self.forgotten(source_op, target_op)
        elif target_state.status != "Success" and self.runs_on_target():
            m.operation.log(
                f"The target's side reported a failure ({target_state.error}), but the "
                f"container runs on {m.target_host.name} (its init has a PID): it is kept there.",
                "transferring",
            )
        elif target_state.status != "Success":
            error = target_state.error
            connection = any(word in error.lower() for word in CONNECTION_TROUBLE)
            if mode == "pull" and connection and not downtime.dump_operations:
                settle_source(m, source_op)
                remove_partial_target(m)
                raise ConnectionTrouble(error)
            raise target_failed(m, source_op, target_op, error)
        # The source's side ends later; it is settled during clean-up (waiting for it here
        # once added 1.2 s to a measured downtime).
        m.unsettled_source_op = source_op

    def cancellable(self) -> bool:
        """A transfer can be cancelled until CRIU starts its dump: from then on the container
        is held frozen, and cancelling would leave it waiting for a restore that never comes."""
        return not self.live or (self.downtime.start is None and not self.downtime.dump_operations)

    def honour_cancel(self, source_op: str) -> None:
        """At most once a second: if the user asked to cancel and the transfer still can be,
        cancel the source's side (the target's then fails, and the container stays home)."""
        now = time.monotonic()
        if self.cancel_sent or now - self.cancel_checked < 1.0:
            return
        self.cancel_checked = now
        asked = lifecycle.cancel_asked(self.migration.operation)
        if not asked:
            return
        if not self.cancellable():
            if not self.told_not_cancellable:
                self.migration.operation.log(
                    "Cancel requested, but CRIU holds the container now: the migration ends by "
                    "itself within seconds, and is not cancelled.",
                    "transferring",
                )
                self.told_not_cancellable = True
            return
        lxd.cancel_operation(self.source.target, source_op)
        self.cancel_sent = True
        self.migration.operation.log("Cancel requested: asked LXD to stop the transfer.")

    def poll(self, target_op: str, watch_freeze: bool) -> lxd.OperationState | None:
        if self.downtime.sampling(watch_freeze):
            target_state = lxd.operation_state(self.target.target, target_op)
            self.downtime.sample()
            return target_state
        # Nothing left to sample: LXD answers the moment its operation ends (0.01 s after the
        # target runs; polling every 0.1 s saw it 0.1 s late).
        return lxd.wait_operation(self.target.target, target_op, seconds=1)

    def runs_on_target(self) -> bool:
        """The restore finished on the target even though its side failed afterwards (its
        last message to a source that died): the copy runs, with a live init."""
        m = self.migration
        try:
            return lxd.instance_status(self.target.target, m.new_name) == "Running" and bool(
                lxd.instance_init_pid(self.target.target, m.new_name)
            )
        except lxd.LXDError:
            return False

    def forgotten(self, source_op: str, target_op: str) -> None:
        """The target's LXD no longer knows its operation: it ended more than a few seconds
        ago, or the daemon restarted in between. A live copy that runs is kept; a stopped
        copy is trusted only if the target never went silent (else it may be incomplete)."""
        m = self.migration
        status = lxd.instance_status(self.target.target, m.new_name)
        silent = self.target.patience.ever_silent
        if (status == "Running") if self.live else (status == "Stopped" and not silent):
            lifecycle.save_result(m.operation)
            return
        host = m.target_host.name
        why = (f"{host}'s LXD stopped answering during the transfer" if silent
               else f"{host}'s LXD no longer knows its migration")  # fmt: skip
        raise target_failed(
            m, source_op, target_op,
            f"{why}, and its copy is {(status or 'not there').upper()}"
            + (" (it may be incomplete)" if status == "Stopped" else ""),
            why=why,
        )  # fmt: skip
