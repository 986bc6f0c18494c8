"""Moving a container between hosts: pre-flight, then one of three strategies, then
verification before the source copy is removed. At every failure point one copy exists and
the outcome says which, in which state, and what to do.

Strategies for a RUNNING container:
- live: LXD's live migration. CRIU freezes the container, dumps it, and (with LXD 5.0.2) the
  dump waits in LXD's post-dump action script until the target has restored it.
- stateful_move: stateful stop (checkpoint to disk), move the stopped container with its saved
  state, start it on the target (which restores it).
- cold: stop, move, start (the processes restart).
A stopped container is simply moved ("stopped").

Downtime of a live migration comes from CRIU's dump log: freezing the cgroup to "Unfreezing
tasks", which CRIU does only once LXD's post-dump action script returns, after the target has
restored. The panel asks LXD to make the first filesystem copy without freezing the container
(UNFROZEN_FIRST_COPY); where LXD cannot, its freeze for that copy is observed and added.
LXD reports the container Running while CRIU holds it, so the panel's own observation, kept
beside CRIU's figure as a cross-check, starts when LXD's operation for CRIU's dump appears
on the source (or, where LXD froze for the first copy, at the first Freezing or Frozen
sample) and ends at the first sample of the container Running on the target. Without the log
(a missed fetch), the observation is the figure; for the other strategies it is always
observed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from panel import lxd
from panel.models import Host, Operation
from panel.preflight import Side, blocked, run_checks
from workers.celery import app
from workers.hosts import fetch_logs, sync_host, target_for
from workers.runner import OperationFailed, Tracker, run

# A live migration copies the root filesystem twice: once while the container runs, then again
# (only what changed) while CRIU holds it frozen. For the first copy LXD 5.0.2 also freezes
# the container (dir pools), unless asked with `allow_inconsistent`: that freeze is downtime
# CRIU's log does not show (0.17 s on the lab), and liblxc's cgroup v1 freeze polls once a
# second, so about one run in three it lasted 1.17 s and the whole migration took 1 s longer.
# The final copy is made while CRIU holds the tasks and sends what changed since the first
# (rsync's size-and-mtime check, as without the flag), so the first copy only has to be good
# enough to shorten the second. LXD's own client checks this extension before sending it.
UNFROZEN_FIRST_COPY = "cluster_migration_inconsistent_copy"
# LXD creates this operation on the source when CRIU's final dump starts; it runs until the
# target has restored. With an unfrozen first copy LXD reports the container Running all along,
# so its appearance is what the panel observes as the start of the downtime.
DUMP_OPERATION = "Live-migrating instance"
SAMPLE_INTERVAL = 0.1  # seconds between status samples while a transfer runs
CONNECTION_TROUBLE = (
    "dial tcp",
    "connection refused",
    "no route to host",
    "i/o timeout",
    "network is unreachable",
)


# --- Pre-flight -------------------------------------------------------------------------------


def side_of(host: Host) -> tuple[Side, lxd.Target]:
    target = target_for(host)
    try:
        facts = {**lxd.server_facts(target), **host.agent_facts}
    except lxd.LXDError as error:
        return Side(host.name, False, False, str(error), {}), target
    trusted = facts.get("auth") == "trusted"
    return Side(host.name, True, trusted, "", facts), target


def gather_checks(operation: Operation) -> tuple[list, dict]:
    """The pre-flight checks, and the container's definition read for them. Both hosts are
    asked at once (a dozen requests each): this runs at the start of every migration."""

    clients = lxd.lend_clients()  # each helper asks one host; this thread only waits

    def ask_source() -> tuple[Side, dict]:
        lxd.borrow_clients(clients)
        side, target = side_of(operation.source_host)
        usable = side.reachable and side.trusted
        return side, lxd.instance_definition(target, operation.instance_name) if usable else {}

    def ask_target() -> tuple[Side, bool]:
        lxd.borrow_clients(clients)
        side, target = side_of(operation.target_host)
        usable = side.reachable and side.trusted
        return side, usable and lxd.instance_status(target, operation.target_name) is not None

    with ThreadPoolExecutor(max_workers=2) as pool:
        asked_source, asked_target = pool.submit(ask_source), pool.submit(ask_target)
        (source, container), (target, taken) = asked_source.result(), asked_target.result()
    pool_name = operation.params.get("pool", "")
    return run_checks(source, target, container, pool_name, operation.target_name, taken), container


def preflight(operation: Operation) -> str:
    Tracker(operation).enter("checking", "Asking both hosts what the migration needs.")
    checks, _ = gather_checks(operation)
    operation.result = {"checks": [check.as_dict() for check in checks]}
    failed = [check for check in checks if check.status == "fail"]
    if not failed:
        return f"All {len(checks)} checks passed or are advisory."
    return f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(
        check.label for check in failed
    )


# --- Migration --------------------------------------------------------------------------------


class Migration:
    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.params = operation.params
        self.name, self.new_name = operation.instance_name, operation.target_name
        self.source_host, self.target_host = operation.source_host, operation.target_host
        self.source = Tracker(operation)
        self.target = Tracker(operation, host=operation.target_host)
        self.started = time.monotonic()
        self.phases: list[dict] = []
        self.downtime_start: float | None = None
        self.downtime_end: float | None = None
        # The source's side of a transfer that succeeded: it ends after the target's (LXD
        # 5.0.2 keeps the dump in its action script a while), and is settled during clean-up.
        self.unsettled_source_op: str | None = None
        self.target_running_at: float | None = None
        self.checked_definition: dict = {}
        source_extensions = self.source_host.facts.get("api_extensions", [])
        self.unfrozen_first_copy = UNFROZEN_FIRST_COPY in source_extensions
        self.dumps_before: set[str] = set()  # other migrations' dumps already on the source
        # Another migration from the same host may start its dump at the same time, and LXD
        # does not say whose dump an operation is: then no observation is recorded.
        self.observation_shared = False
        self.first_freeze_from: float | None = None  # LXD froze for the first copy (old LXD)
        self.first_freeze: float | None = None  # ... for this long, as sampled

    # Bookkeeping of where the time went, for the timeline chart.
    # The phases during which the container runs somewhere; in all others it runs nowhere.
    RUNNING_PHASES = (
        "transfer (running)",
        "finishing (running on the target)",
        "clean up",
        "clean up: LXD still stopping the source",
        "clean up: delete",
    )

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

    def run(self) -> str:
        checks, self.checked_definition = gather_checks(self.operation)
        strategy = self.params["strategy"]
        self.operation.result = {
            "checks": [check.as_dict() for check in checks],
            "strategy": strategy,
        }
        stopping = blocked(checks, strategy)
        if stopping:
            raise OperationFailed(
                "Pre-flight failed, nothing was changed: "
                + "; ".join(f"{check.label}: {check.reason}" for check in stopping),
                state_after=f"on {self.source_host.name}, untouched",
            )
        try:
            {
                "live": self.live,
                "stateful_move": self.stateful_move,
                "cold": self.cold,
                "stopped": self.stopped,
            }[strategy]()
            return self.finish_up(strategy)
        finally:
            self.settle_left_source()

    def settle_left_source(self) -> None:
        """A failure after the transfer (starting or verifying the target) must not leave the
        source's LXD operation waiting: settle it, cancelling where LXD allows."""
        if self.unsettled_source_op is None:
            return
        source_op, self.unsettled_source_op = self.unsettled_source_op, None
        try:
            self.settle_source(source_op)
        except lxd.LXDError as error:
            self.operation.log(f"Could not settle the source's LXD operation: {error}")

    def live(self) -> None:
        self.transfer(live=True, watch_freeze=True)

    def stateful_move(self) -> None:
        self.stop_source(stateful=True)
        self.transfer(live=False)
        self.start_target(restoring=True)

    def cold(self) -> None:
        self.stop_source(stateful=False)
        self.transfer(live=False)
        self.start_target(restoring=False)

    def stopped(self) -> None:
        self.transfer(live=False)

    # --- the steps ---

    def stop_source(self, stateful: bool) -> None:
        begin = time.monotonic()
        self.downtime_start = begin
        stage = "checkpointing" if stateful else "stopping"
        self.source.enter(
            stage,
            f"{'Stateful stop' if stateful else 'Stop'} of {self.name} on {self.source_host.name}.",
        )
        state = self.source.follow(
            lxd.start_state_change(self.source.target, self.name, "stop", stateful=stateful)
        )
        if state is not None and state.status != "Success":
            status = lxd.instance_status(self.source.target, self.name)
            where = f"on {self.source_host.name}, {(status or 'gone').upper()}"
            words = ("Checkpoint failed" if stateful else "Stop failed") + (
                f"; the container is still running on {self.source_host.name}, nothing moved."
                if status == "Running"
                else f"; the container is {where}: start it there."
            )
            raise OperationFailed(words, state.error, where)
        self.phase("checkpoint" if stateful else "stop", begin, time.monotonic())

    def transfer(self, live: bool, watch_freeze: bool = False) -> None:
        begin = time.monotonic()
        self.source.enter(
            "transferring",
            f"Moving {self.name} to {self.target_host.name}"
            + (" live (CRIU)." if live else " (stopped)."),
        )
        # A live transfer follows the checks at once: the definition they read is current.
        # Otherwise the container was stopped since, so it is read again.
        definition = self.checked_definition if live else None
        definition = definition or lxd.instance_definition(self.source.target, self.name)
        try:
            self.pull_or_push(definition, live, watch_freeze, mode="pull")
        except ConnectionTrouble as trouble:
            self.operation.log(
                f"The target could not reach the source ({trouble}); retrying in push mode.",
                "transferring",
            )
            self.pull_or_push(definition, live, watch_freeze, mode="push")
        end = time.monotonic()  # the target's operation has just ended
        if live:
            frozen_at = self.downtime_start or begin
            running_at = self.target_running_at or end
            self.phase("transfer (running)", begin, frozen_at)
            self.phase("frozen: checkpoint, transfer, restore", frozen_at, running_at)
            if running_at < end:
                self.phase("finishing (running on the target)", running_at, end)
            self.downtime_end = running_at
        else:
            self.phase("transfer (stopped)", begin, end)

    def pull_or_push(self, definition: dict, live: bool, watch_freeze: bool, mode: str) -> None:
        source_target, target_target = self.source.target, self.target.target
        pool = self.params.get("pool", "")
        unfrozen = live and self.unfrozen_first_copy
        if unfrozen and watch_freeze:
            self.dumps_before = lxd.running_operations(source_target, DUMP_OPERATION)
            self.observation_shared = (
                Operation.objects.active()
                .filter(kind=Operation.Kind.MIGRATE, source_host=self.source_host)
                .exclude(pk=self.operation.pk)
                .exists()
            )
        if mode == "pull":
            source_op, secrets = lxd.start_migration_source(
                source_target, self.name, live, unfrozen_first_copy=unfrozen
            )
            self.source.remember(source_op)
            origin = {"mode": "pull", **lxd.migration_peer(source_target, source_op, secrets)}
            body = lxd.migration_target_body(definition, self.new_name, live, pool, origin)
            target_op, _ = lxd.start_migration_target(target_target, body)
            self.target.remember(target_op)
        else:
            body = lxd.migration_target_body(
                definition, self.new_name, live, pool, {"mode": "push"}
            )
            target_op, secrets = lxd.start_migration_target(target_target, body)
            self.target.remember(target_op)
            push_to = lxd.migration_peer(target_target, target_op, secrets)
            source_op, _ = lxd.start_migration_source(
                source_target, self.name, live, push_to, unfrozen_first_copy=unfrozen
            )
            self.source.remember(source_op)
        self.follow_transfer(source_op, target_op, watch_freeze, mode)

    def follow_transfer(self, source_op: str, target_op: str, watch_freeze: bool, mode: str):
        """Follow both ends until the target's operation ends, sampling the source status
        to catch the freeze, and copying `fs_progress` from whichever end reports it."""
        deadline = time.monotonic() + settings.OPERATION_TIMEOUT_SECONDS
        while True:
            if self.sampling(watch_freeze):
                target_state = lxd.operation_state(self.target.target, target_op)
                if self.downtime_start is None:
                    self.notice_freeze()
                elif self.first_freeze_from is not None:
                    self.notice_thaw()
                else:
                    self.notice_target_running()
            else:
                # Nothing left to sample: LXD answers the moment its operation ends (0.01 s
                # after the target runs; polling every 0.1 s saw it 0.1 s late).
                target_state = lxd.wait_operation(self.target.target, target_op, seconds=1)
            if target_state is None or target_state.finished:
                break
            self.source.record_progress(target_state.progress_text)
            if time.monotonic() > deadline:
                raise self.target_failed(source_op, target_op, "the migration timed out")
            if self.sampling(watch_freeze):  # not once the target runs: wait on LXD
                time.sleep(SAMPLE_INTERVAL)
        if target_state is not None and target_state.status != "Success":
            error = target_state.error
            if mode == "pull" and any(word in error.lower() for word in CONNECTION_TROUBLE):
                self.settle_source(source_op)
                self.remove_partial_target()
                raise ConnectionTrouble(error)
            raise self.target_failed(source_op, target_op, error)
        # The source's side ends later; it is settled during clean-up (waiting for it here
        # once added 1.2 s to a measured downtime).
        self.unsettled_source_op = source_op

    def sampling(self, watch_freeze: bool) -> bool:
        """Still watching for the downtime's start or end (it ends when the target runs)."""
        return watch_freeze and self.target_running_at is None

    def notice_target_running(self) -> None:
        """The downtime ends when the container runs on the target: LXD's target operation
        ends a little later (0.01 s on the lab), while LXD finishes on both sides."""
        if lxd.instance_status(self.target.target, self.new_name) != "Running":
            return
        self.target_running_at = time.monotonic()
        self.operation.log(
            f"The container runs on {self.target_host.name}; LXD is finishing the migration.",
            "restoring",
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
            words = "The container is frozen: CRIU is checkpointing it."
        elif lxd.instance_status(self.source.target, self.name) in ("Freezing", "Frozen"):
            self.first_freeze_from = time.monotonic()
            words = "LXD froze the container to copy its filesystem; CRIU checkpoints it next."
        else:
            return
        self.downtime_start = time.monotonic()
        self.operation.log(words, "checkpointing")
        self.source.record_progress("frozen: checkpointing and restoring")

    def notice_thaw(self) -> None:
        """LXD's freeze for the first copy ends when LXD says anything else again."""
        if lxd.instance_status(self.source.target, self.name) in ("Freezing", "Frozen"):
            return
        self.first_freeze = round(time.monotonic() - self.first_freeze_from, 3)
        self.first_freeze_from = None

    def settle_source(self, source_op: str) -> lxd.OperationState | None:
        """Wait (bounded) for the source's side to end, cancelling it if LXD allows."""
        grace = time.monotonic() + settings.MIGRATION_SOURCE_GRACE_SECONDS
        state = lxd.wait_operation(self.source.target, source_op, seconds=1)
        while state is not None and not state.finished and time.monotonic() < grace:
            state = lxd.wait_operation(self.source.target, source_op, seconds=1)
        if state is not None and not state.finished and state.may_cancel:
            lxd.cancel_operation(self.source.target, source_op)
            self.operation.log(f"Cancelled the source's LXD operation {source_op}.")
            state = lxd.wait_operation(self.source.target, source_op, seconds=5)
        return state

    def target_failed(self, source_op: str, target_op: str, error: str) -> OperationFailed:
        self.target.enter("reconciling", f"The target failed ({error}); checking both hosts.")
        restore_errors = self.criu_errors_on_target()
        source_state = self.settle_source(source_op)
        self.remove_partial_target()
        status = lxd.instance_status(self.source.target, self.name)
        source, target = self.source_host.name, self.target_host.name
        if source_state is not None and not source_state.finished:
            words = (
                f"Migration failed on {target}, and the source's CRIU dump is stuck in LXD's "
                f"action script on {source} (LXD operation {source_op}): the container "
                f"there is held by it and does not run. Force-stop it on {source} and start "
                "it again, or kill the criu process on that host."
            )
            state_after = f"on {source}, held by a stuck dump"
        elif status == "Running" and self.held_by_a_tracer():
            words = (
                f"Migration failed on {target}. On {source} the container is still held by "
                "CRIU's dump, which waits in LXD's action script (LXD 5.0.2 leaves it there when "
                "the target's restore fails): its processes are stopped although LXD reports it "
                f"Running. Kill that criu process on {source} (`criu dump ... "
                f"lxc.payload.{self.name}`); the container then stops and can be started again."
            )
            state_after = f"on {source}, held by a stuck CRIU dump (processes stopped)"
        elif status == "Running":
            words = (
                f"Migration failed on {target}; the container is still running on "
                f"{source}, nothing was lost."
            )
            state_after = f"on {source}, RUNNING"
        else:
            words = (
                f"Migration failed on {target}; the container is {(status or 'gone').upper()} "
                f"on {source}: start it there."
            )
            state_after = f"on {source}, {(status or 'gone').upper()}"
        if restore_errors:
            error = f"{error}\n\nFrom CRIU's log on {target}:\n{restore_errors}"
        return OperationFailed(words, error, state_after)

    def held_by_a_tracer(self) -> bool:
        """LXD says Running even while CRIU holds the tasks; init's state says the truth."""
        try:
            state = lxd.container_init_state(self.source.target, self.name)
        except lxd.LXDError as error:
            self.operation.log(f"Could not read the container's init state: {error}")
            return False
        self.operation.log(f"The container's init is in state {state!r}.", "reconciling")
        return state.startswith("t")

    def criu_errors_on_target(self) -> str:
        try:
            logs = lxd.instance_logs(self.target.target, self.new_name, 1024 * 1024)
        except lxd.LXDError:
            return ""
        for filename, text, _ in sorted(logs, reverse=True):
            if filename.startswith(("migration_restore_", "snapshot_restore_")):
                errors = [line for line in text.splitlines() if "Error" in line]
                return f"{filename}:\n" + "\n".join(errors[-12:]) if errors else ""
        return ""

    def remove_partial_target(self) -> None:
        """A failed transfer can leave a stopped, half-made copy on the target: remove it so
        the one real copy stays on the source and a retry finds the name free."""
        status = lxd.instance_status(self.target.target, self.new_name)
        if status is None or status == "Running":
            return
        self.target.follow(lxd.start_delete_instance(self.target.target, self.new_name))
        self.operation.log(f"Removed the partial copy on {self.target_host.name}.", "reconciling")

    def start_target(self, restoring: bool) -> None:
        begin = time.monotonic()
        self.target.enter(
            "restoring" if restoring else "starting",
            f"Starting {self.new_name} on {self.target_host.name}"
            + (" from its saved state." if restoring else "."),
        )
        state = self.target.follow(
            lxd.start_state_change(self.target.target, self.new_name, "start", stateful=restoring)
        )
        if state is not None and state.status != "Success":
            target_status = lxd.instance_status(self.target.target, self.new_name)
            raise OperationFailed(
                f"{'Restore' if restoring else 'Start'} on {self.target_host.name} failed. The "
                f"moved copy is on {self.target_host.name} ({(target_status or 'gone').upper()}); "
                f"the original is still on {self.source_host.name} (stopped"
                f"{' with its saved state' if restoring else ''}). Start it on "
                f"{self.source_host.name}, then remove the copy on {self.target_host.name}.",
                state.error,
                f"on {self.source_host.name}, STOPPED; copy on {self.target_host.name}",
            )
        self.downtime_end = time.monotonic()
        self.phase("restore (start)" if restoring else "start", begin, self.downtime_end)

    def finish_up(self, strategy: str) -> str:
        expected = "Stopped" if strategy == "stopped" else "Running"
        self.target.enter("verifying", f"Checking {self.new_name} on {self.target_host.name}.")
        status = lxd.instance_status(self.target.target, self.new_name)
        if status != expected:
            raise OperationFailed(
                f"The copy on {self.target_host.name} is {(status or 'gone').upper()}, not "
                f"{expected.upper()}; the original was kept on {self.source_host.name}.",
                state_after=f"on {self.source_host.name}; copy on {self.target_host.name}",
            )
        left_behind = self.clean_up_source(strategy)
        self.operation.result["total_seconds"] = round(time.monotonic() - self.started, 3)
        where = f"on {self.target_host.name}, {expected.upper()}"
        self.operation.container_state_after = where
        downtime = self.operation.downtime_seconds
        summary = f"Migrated to {self.target_host.name} ({strategy.replace('_', ' ')}); {where}."
        if downtime is not None:
            summary += f" Downtime {downtime:.2f} s."
        return summary + left_behind

    def record_measurements(self, strategy: str) -> None:
        """Keep the dump log (it goes away with the source copy) and the measured downtime
        (see `downtime_figure`), with the panel's own observation as a cross-check."""
        frozen = None
        if strategy == "live" and self.operation.instance is not None:
            fetch_logs(self.operation.instance)
            frozen = criu_frozen_seconds(self.operation.instance)
        observed = None
        if (
            self.downtime_start is not None
            and self.downtime_end is not None
            and not self.observation_shared
        ):
            observed = round(self.downtime_end - self.downtime_start, 3)
        self.operation.downtime_seconds, source = downtime_figure(
            frozen, self.first_freeze, observed
        )
        self.operation.result.update(
            phases=self.phases,
            criu_frozen_seconds=frozen,
            observed_downtime_seconds=observed,
            first_copy_freeze_seconds=self.first_freeze,
            downtime_source=source,
        )

    def settle_then_measure(self, strategy: str) -> None:
        """Let the source's side of the transfer end, then keep its logs and the figures.
        The container already runs verified on the target: LXD trouble here is noted, and
        never turns the migration into a failure."""
        try:
            if self.unsettled_source_op is not None:
                self.settle_source(self.unsettled_source_op)
                self.unsettled_source_op = None
            self.record_measurements(strategy)
        except lxd.LXDError as error:
            self.operation.log(f"Could not read the source's logs and figures: {error}")
            self.operation.result.setdefault("phases", self.phases)

    def clean_up_source(self, strategy: str) -> str:
        """Record the measurements, then delete the source copy, now that the target is
        verified. LXD 5.0.2 may still be stopping it ('busy running a "stop" operation'):
        retry until it is free. The source's logs (CRIU's dump log goes with the copy) are
        read while LXD stops it, not before: that wait is on every live migration's path."""
        if self.params.get("keep_source"):
            self.settle_then_measure(strategy)
            return f" The source copy was kept on {self.source_host.name}, as asked."
        begin = time.monotonic()
        self.source.enter("cleaning up", f"Removing the source copy on {self.source_host.name}.")
        with ThreadPoolExecutor(max_workers=1) as pool:
            measured = pool.submit(in_own_connection, self.settle_then_measure, strategy)
            try:
                deletion = delete_when_stopped(self.source, self.name, measured.result)
            except lxd.LXDError as error:  # the source host went away: the copy may be left
                deletion = Deletion(str(error), None)
            measured.result()  # also when the copy never stopped: the figures are kept
        self.record_clean_up(begin, deletion)
        if deletion.error:
            self.operation.log(f"The source copy could not be removed: {deletion.error}")
            return (
                f" The source copy was left behind on {self.source_host.name} (stopped): "
                f"{deletion.error}. Remove it with one click below."
            )
        return ""

    def record_clean_up(self, begin: float, deletion: Deletion) -> None:
        """The clean-up's time, split where LXD let go of the source copy: until then it was
        finishing the copy's stop (about 0.5 s on Debian's LXD 5.0.2, mostly lxcfs's
        post-stop hook, a `sleep 0.5s`: lab/README.md). That wait is why `lxc move` fails
        at its delete there."""
        end, freed_at = time.monotonic(), deletion.last_try_at
        if deletion.error or freed_at is None or not deletion.refusals:
            self.phase("clean up", begin, end)
            return
        self.phase("clean up: LXD still stopping the source", begin, freed_at)
        self.phase("clean up: delete", freed_at, end)
        self.operation.log(f"LXD was still stopping the source copy for {freed_at - begin:.2f} s.")


class Deletion(NamedTuple):
    error: str  # '' once the instance is gone, else the last reason it could not be deleted
    last_try_at: float | None  # when the last delete was asked for (None: never asked)
    refusals: int = 0  # deletes LXD refused before that one


def delete_when_stopped(
    tracker: Tracker, name: str, before_delete: Callable[[], object] = lambda: None
) -> Deletion:
    """Delete a stopped instance, waiting while LXD is still busy with it (after a migration
    LXD 5.0.2 is often still stopping it: 'busy running a "stop" operation'). `before_delete`
    runs (and is waited for) once it has stopped, right before the first delete."""
    deadline = time.monotonic() + settings.MIGRATION_SOURCE_GRACE_SECONDS
    last_error, last_try_at, tries = "", None, 0
    while time.monotonic() < deadline:
        status = lxd.instance_status(tracker.target, name)
        if status is None:
            return Deletion("", last_try_at, max(tries - 1, 0))
        if status == "Stopped":
            before_delete()
            last_try_at, tries = time.monotonic(), tries + 1
            try:
                state = tracker.follow(lxd.start_delete_instance(tracker.target, name))
            except lxd.LXDError as error:  # LXD may refuse at once while it is busy
                state, last_error = None, str(error)
            else:
                if state is None or state.status == "Success":
                    return Deletion("", last_try_at, tries - 1)
                last_error = state.error
        else:
            last_error = f"it is {status.upper()}"
        time.sleep(0.02)  # LXD frees the stopped copy about 0.5 s after it stops; be there
    return Deletion(last_error or "it did not stop in time", last_try_at, tries)


def in_own_connection(function: Callable, *args):
    """Run in a helper thread with its own database connection, closed afterwards."""
    try:
        return function(*args)
    finally:
        connection.close()


class ConnectionTrouble(Exception):
    """The target could not connect to the source (pull mode): try push mode."""


# CRIU logs seconds since it started. The freeze begins when it freezes the cgroup (or, if
# that line is missing, when it seizes the first task) and ends when it unfreezes the tasks.
FREEZER = re.compile(r"^\((\d+\.\d+)\) (freezer\.state=FREEZING|freezing cgroup|Seized task)")
UNFREEZE = re.compile(r"^\((\d+\.\d+)\) Unfreezing tasks")


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


def delete_copy(operation: Operation) -> str:
    """Remove a stopped copy left behind (a source copy after a migration, a partial target)."""
    tracker = Tracker(operation)
    status = lxd.instance_status(tracker.target, operation.instance_name)
    if status is None:
        return "There was nothing to remove: the copy is already gone."
    if status != "Stopped":
        raise OperationFailed(
            f"Refusing to remove a {status.upper()} instance: only a stopped copy is removed here.",
            state_after=status.upper(),
        )
    tracker.enter("deleting", f"Removing the stopped copy on {operation.source_host.name}.")
    error = delete_when_stopped(tracker, operation.instance_name).error
    if error:
        raise OperationFailed(f"Removing the copy failed: {error}.", error, "STOPPED")
    return f"Removed the stopped copy on {operation.source_host.name}."


def migrate(operation: Operation) -> str:
    return Migration(operation).run()


WORK = {
    Operation.Kind.PREFLIGHT: preflight,
    Operation.Kind.MIGRATE: migrate,
    Operation.Kind.DELETE_COPY: delete_copy,
}


@app.task
def run_migration_operation(operation_id: int) -> None:
    operation = Operation.objects.filter(pk=operation_id).only("kind").first()
    if operation is None:
        return
    finished = run(operation_id, WORK[operation.kind], run_migration_operation)
    if finished is None:
        return
    for host_id in {finished.source_host_id, finished.target_host_id} - {None}:
        sync_host.delay(host_id)  # both inventories show the truth afterwards
