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

The pieces: gather.py (the pre-flight, asked again first), transfer.py, downtime.py (the
timeline and the downtime), recovery.py (when the target fails), cleanup.py (the source copy).

"""

from __future__ import annotations

import time

from panel import lxd
from panel.operations import aftercare, lifecycle, settle
from panel.operations.cleanup import clean_up_source
from panel.operations.container import allow_checkpoint
from panel.operations.crossing import BackupTransfer, crossing
from panel.operations.downtime import DowntimeWatch, Timeline
from panel.operations.gather import gather_checks
from panel.operations.models import Operation
from panel.operations.preflight import blocked
from panel.operations.recovery import settle_source
from panel.operations.runner import OperationCancelled, OperationFailed, OperationLost, Tracker
from panel.operations.transfer import UNFROZEN_FIRST_COPY, Transfer
from panel.operations.verify import evidence_words, running_for_real


class Migration:
    """One migration's run: the checks again, the strategy's steps, then verification and
    the clean-up. Holds what its collaborators share (trackers, timeline, downtime)."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.params = operation.params
        self.name, self.new_name = operation.instance_name, operation.target_name
        self.source_host = operation.known_source_host()
        self.target_host = operation.known_target_host()
        self.source = Tracker(operation)
        self.target = Tracker(operation, host=self.target_host)
        self.timeline = Timeline()
        unfrozen = UNFROZEN_FIRST_COPY in self.source_host.facts.get("api_extensions", [])
        self.downtime = DowntimeWatch(operation, self.source, self.target, unfrozen)
        # The source's side of a transfer that succeeded: it ends after the target's (LXD
        # 5.0.2 keeps the dump in its action script a while), and is settled during clean-up.
        self.unsettled_source_op: str | None = None
        self.source_op: str | None = None  # the source's side of the transfer, once started
        self.checked_definition: dict = {}

    def run(self) -> str:
        gathered = gather_checks(self.operation, self.source, self.target, recheck=True)
        self.checked_definition = gathered.container
        strategy = self.params["strategy"]
        self.operation.result = {
            "checks": [check.as_dict() for check in gathered.checks],
            "strategy": strategy,
            "init_pid_before": gathered.init_pid,
            # the key of this migration's downtime in strategy.py
            "pools": gathered.pools.as_dict(),
        }
        stopping = blocked(gathered.checks, strategy)
        if stopping:
            untouched = "untouched"
            if not gathered.container:  # the source did not answer: the aftercare reads it
                aftercare.add(self.operation, self.source_host, self.name, aftercare.HOME)
                untouched = "untouched (its LXD does not answer: state unknown)"
            raise OperationFailed(
                "Pre-flight failed, nothing was changed: "
                + "; ".join(f"{check.label}: {check.reason}" for check in stopping),
                state_after=f"on {self.source_host.name}, {untouched}",
            )
        lifecycle.save_result(self.operation)
        try:
            {
                "live": self.live,
                "stateful_move": self.stateful_move,
                "cold": self.cold,
                "stopped": self.stopped,
            }[strategy]()
            return self.finish_up(strategy)
        except lxd.LXDUnreachable as error:
            return self.after_lost_host(error, strategy)
        finally:
            self.settle_left_source()

    def sides(self) -> settle.Sides:
        return settle.Sides(
            source=self.source,
            target=self.target,
            name=self.name,
            new_name=self.new_name,
            strategy=self.params["strategy"],
            source_op=self.source_op,
            dump_operations=self.downtime.dump_operations,
            dumps_before=sorted(self.downtime.dumps_before),
            init_pid_before=self.operation.result.get("init_pid_before"),
            target_seen_running=self.downtime.target_running_at is not None,
        )

    def after_lost_host(self, error: lxd.LXDUnreachable, strategy: str) -> str:
        """A host stopped answering for longer than the peer wait: decide the container's
        home from what the hosts say (settle.py). A copy running on the target is verified
        and the source cleaned up as after any migration; else the source is its home."""
        silent = self.target_host if error.endpoint == self.target.target.endpoint else None
        silent = silent or self.source_host
        why = f"{silent.name}'s {silent.platform.name} stopped answering during the migration"
        sides = self.sides()
        home, source, target = settle.after_fault(sides, why, str(error), self.operation.stage)
        if home == settle.HOME_SOURCE:
            raise settle.keep_at_source(sides, why, str(error), source, target)
        if home == settle.UNDECIDED:
            raise settle.undecided_words(sides, source)
        if target.answered:
            try:
                return self.finish_up(strategy)
            except lxd.LXDUnreachable:
                pass
        raise settle.seen_running_words(sides, source)

    def settle_left_source(self) -> None:
        """A failure after the transfer (starting or verifying the target) must not leave the
        source's LXD operation waiting: settle it, cancelling where LXD allows."""
        if self.unsettled_source_op is None:
            return
        source_op, self.unsettled_source_op = self.unsettled_source_op, None
        try:
            settle_source(self, source_op)
        except lxd.LXDError as error:
            self.operation.log(f"Could not settle the source's LXD operation: {error}")

    def live(self) -> None:
        self.cancel_point("before the transfer")
        Transfer(self).run(live=True, watch_freeze=True)

    def stateful_move(self) -> None:
        self.cancel_point("before the checkpoint")
        self.stop_source(stateful=True)
        self.cancel_point("after the checkpoint")
        Transfer(self).run(live=False)
        self.cancel_point("after the transfer")
        self.start_target(restoring=True)

    def cold(self) -> None:
        self.cancel_point("before the stop")
        self.stop_source(stateful=False)
        self.cancel_point("after the stop")
        self.stopped()
        self.cancel_point("after the transfer")
        self.start_target(restoring=False)

    def cancel_point(self, where: str) -> None:
        """Between two steps a cancel the user asked for is honoured: the container is put
        back at home as it was (restored from its saved state after a checkpoint)."""
        asked = lifecycle.cancel_asked(self.operation)
        if asked is None:
            raise OperationLost(f"operation {self.operation.pk} is no longer this worker's")
        if asked:
            raise self.cancelled(where)

    def cancelled(self, where: str) -> OperationCancelled:
        why = f"Cancelled {where}"
        if where.startswith("before the "):
            host = self.source_host.name
            return OperationCancelled(f"{why}: nothing was changed.", f"on {host}, untouched")
        sides = self.sides()
        _, source, target = settle.after_fault(sides, why, "", where)
        failure = settle.keep_at_source(sides, why, "", source, target)
        return OperationCancelled(failure.outcome, failure.state_after)

    def stopped(self) -> None:
        """Between LXD and Incus a stopped container goes as a translated backup."""
        (BackupTransfer if crossing(self) else Transfer)(self).run(live=False)

    # --- the steps ---

    def stop_source(self, stateful: bool) -> None:
        begin = time.monotonic()
        self.downtime.start = begin
        stage = "checkpointing" if stateful else "stopping"
        self.source.enter(
            stage,
            f"{'Stateful stop' if stateful else 'Stop'} of {self.name} on {self.source_host.name}.",
        )
        if stateful:
            allow_checkpoint(self.source, self.name)
        state = self.source.follow(
            lxd.start_state_change(self.source.target, self.name, "stop", stateful=stateful)
        )
        if state is not None and state.status != "Success":
            status = (self.source.summary(self.name) or {}).get("status")
            where = f"on {self.source_host.name}, {(status or 'gone').upper()}"
            words = ("Checkpoint failed" if stateful else "Stop failed") + (
                f"; the container is still running on {self.source_host.name}, nothing moved."
                if status == "Running"
                else f"; the container is {where}: start it there."
            )
            raise OperationFailed(words, state.error, where)
        self.timeline.phase("checkpoint" if stateful else "stop", begin, time.monotonic())

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
        if state is not None and state.status == "Success":
            self.downtime.target_running_at = time.monotonic()  # LXD says it runs there
        if state is not None and state.status != "Success":
            raise self.keep_at_source(
                f"{'Restore' if restoring else 'Start'} on {self.target_host.name} failed",
                state.error,
            )
        self.downtime.end = time.monotonic()
        self.timeline.phase("restore (start)" if restoring else "start", begin, self.downtime.end)

    def keep_at_source(self, why: str, error: str) -> OperationFailed:
        """The target's copy is not the container: settle.py makes the source its home (the
        original started again where it can), and removes the copy on the target."""
        sides = self.sides()
        _, source, target = settle.after_fault(sides, why, error, self.operation.stage)
        return settle.keep_at_source(sides, why, error, source, target)

    def finish_up(self, strategy: str) -> str:
        expected = "Stopped" if strategy == "stopped" else "Running"
        self.target.enter("verifying", f"Checking {self.new_name} on {self.target_host.name}.")
        status = (self.target.summary(self.new_name) or {}).get("status")
        if status != expected:
            silent = self.target.patience.ever_silent
            raise self.keep_at_source(
                (f"{self.target_host.name}'s {self.target_host.platform.name} stopped answering "
                 "during the migration; when it answered again, its copy was " if silent
                 else f"The copy on {self.target_host.name} is ")
                + f"{(status or 'gone').upper()}, not {expected.upper()}",
                "",
            )  # fmt: skip
        if expected == "Running":
            self.verify_processes()
        left_behind = clean_up_source(self, strategy)
        self.operation.result["total_seconds"] = self.timeline.total_seconds()
        where = f"on {self.target_host.name}, {expected.upper()}"
        self.operation.container_state_after = where
        downtime = self.operation.downtime_seconds
        summary = f"Migrated to {self.target_host.name} ({strategy.replace('_', ' ')}); {where}."
        if downtime is not None:
            summary += f" Downtime {downtime:.2f} s."
        return summary + left_behind

    def verify_processes(self) -> None:
        """The target's init PID and processes, never its status alone (verify.py says why).
        A copy that only looks running is not the container: the source stays its home, as
        after any failure on the target (settle.py: started again there, the copy removed)."""
        problem, evidence = running_for_real(self.target.target, self.new_name)
        self.operation.result["target_processes"] = evidence
        if not problem:
            self.operation.log(
                f"{self.new_name} runs on {self.target_host.name}: {evidence_words(evidence)}.",
                "verifying",
            )
            return
        raise self.keep_at_source(
            f"{self.target_host.platform.name} on {self.target_host.name} reports the copy "
            f"RUNNING, but {problem}: the restore failed although both servers reported "
            "success",
            f"Target {self.new_name} on {self.target_host.name}: {evidence_words(evidence)}.",
        )


def migrate(operation: Operation) -> str:
    return Migration(operation).run()
