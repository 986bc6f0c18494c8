"""Container operations: snapshots, restore, start/stop, stateful stop.

Each kind is a plain function: start LXD's call without waiting, follow it, then verify the
outcome against LXD itself. Failures are told the way the checkpoint/restore announcement
tells them: a failed dump leaves the container running; a failed restore may leave it stopped.
"""

from __future__ import annotations

from collections.abc import Callable

from panel import lxd
from panel.hosts.inventory import fetch_logs
from panel.operations.models import Operation, PanelSnapshot
from panel.operations.runner import OperationFailed, Tracker


def container_state(tracker: Tracker, name: str) -> dict | None:
    return tracker.summary(name)


def describe_state(summary: dict | None) -> str:
    if summary is None:
        return "GONE"
    return summary["status"].upper() + (" with saved state" if summary["stateful"] else "")


def fail(tracker: Tracker, headline: str, error: str, advice: dict[str, str]) -> OperationFailed:
    """An OperationFailed whose words depend on the state LXD reports now, with CRIU's own
    error lines added to LXD's terse message ('snapshot dump failed')."""
    operation = tracker.operation
    summary = container_state(tracker, operation.instance_name)
    state = describe_state(summary)
    status = summary["status"] if summary else "Gone"
    criu = criu_error_lines(tracker) if summary is not None else ""
    if criu:
        operation.log(f"CRIU's log says:\n{criu}", "diagnosing")
        error = f"{error}\n\nFrom CRIU's log:\n{criu}"
    return OperationFailed(f"{headline} {advice.get(status, advice['other'])}", error, state)


CRIU_LOG_PREFIXES = ("snapshot_dump_", "snapshot_restore_", "migration_dump_", "migration_restore_")


def criu_error_lines(tracker: Tracker, limit: int = 12) -> str:
    """Fetch the container's logs into the panel and return the newest CRIU log's errors."""
    operation = tracker.operation
    if operation.instance is None:
        return ""
    fetch_logs(operation.instance, tracker.target)
    criu_logs = [log for log in operation.instance.logs.all()
                 if log.filename.startswith(CRIU_LOG_PREFIXES)]  # fmt: skip
    if not criu_logs:
        return ""
    newest = max(criu_logs, key=lambda log: log.filename)
    return criu_log_excerpt(newest.filename, newest.content, limit)


def criu_log_excerpt(filename: str, text: str, limit: int = 12) -> str:
    """A CRIU log's last error lines under its name, after the line saying which CRIU wrote
    them ("Version: 3.17.1"): the first thing a maintainer asks, and part of the failure's
    fingerprint (panel/failures/fingerprint.py)."""
    lines = text.splitlines()
    errors = [line for line in lines if "Error" in line]
    if not errors:
        return ""
    version = [line for line in lines[:5] if "Version:" in line][:1]
    return f"{filename}:\n" + "\n".join(version + errors[-limit:])


def allow_checkpoint(tracker: Tracker, name: str) -> None:
    """Before CRIU checkpoints a container: set what its server requires in its config
    (Incus 6.0.4 refuses without migration.stateful=true), and say so in the log."""
    host = tracker.host
    needed = lxd.checkpoint_config(host.platform, host.facts.get("api_extensions") or [])
    if not needed:
        return
    config = lxd.instance_definition(tracker.target, name).get("expanded_config") or {}
    missing = {key: value for key, value in needed.items() if config.get(key) != value}
    if not missing:
        return
    lxd.set_instance_config(tracker.target, name, missing)
    settings = ", ".join(f"{key}={value}" for key, value in missing.items())
    tracker.operation.log(
        f"Set {settings} on {name}: {host.platform.name} checkpoints a container only with it.",
        "preparing",
    )


def snapshot(operation: Operation) -> str:
    tracker, params = Tracker(operation), operation.params
    stateful = operation.kind == Operation.Kind.STATEFUL_SNAPSHOT
    name, snap = operation.instance_name, params["snapshot"]
    what = "stateful snapshot" if stateful else "snapshot"
    if stateful:
        allow_checkpoint(tracker, name)
    tracker.enter("checkpointing" if stateful else "snapshotting", f"Taking {what} {snap!r}.")
    expires = lxd.parse_time(params.get("expires_at"))
    state = tracker.follow(lxd.start_snapshot(tracker.target, name, snap, stateful, expires))
    if state is not None and state.status != "Success":
        headline = "Checkpoint failed" if stateful else "Snapshot failed"
        raise fail(
            tracker,
            f"{headline}.",
            state.error,
            {
                "Running": "The container is still running; nothing was lost. CRIU's dump log is "
                "in the container's log files and in the bug bundle.",
                "other": "The container is no longer running: start it from the container page.",
            },
        )
    tracker.enter("verifying", f"Checking the snapshot on {tracker.host.platform.name}.")
    if "keep" in params:  # a schedule's run prunes, from the whole list
        summary = container_state(tracker, name)
    else:
        summary = lxd.instance_with_snapshot(tracker.target, name, snap)
    taken = [s for s in (summary or {}).get("snapshots", []) if s["name"] == snap]
    if summary is None or not taken:
        raise OperationFailed(
            f"{tracker.host.platform.name} reported success but snapshot {snap!r} does not exist.",
            state_after=describe_state(summary),
        )
    if stateful and not taken[0]["stateful"]:
        raise OperationFailed(
            f"Snapshot {snap!r} exists but is not stateful.", state_after=describe_state(summary)
        )
    operation.container_state_after = describe_state(summary)
    record_panel_snapshot(operation, taken[0])
    kind = "Stateful snapshot" if stateful else "Snapshot"
    pruned = prune_scheduled_snapshots(tracker, summary, params["keep"]) if "keep" in params else ""
    return f"{kind} {snap!r} taken; the container is {describe_state(summary)}.{pruned}"


def record_panel_snapshot(operation: Operation, taken: dict) -> None:
    """Remember that the panel took this snapshot (and whether a schedule did)."""
    if operation.instance is None:
        return
    PanelSnapshot.objects.update_or_create(
        instance=operation.instance,
        name=taken["name"],
        defaults={"created_at": taken["created_at"], "operation": operation,
                  "scheduled": "keep" in operation.params},
    )  # fmt: skip


def prune_scheduled_snapshots(tracker: Tracker, summary: dict, keep: int) -> str:
    """A schedule's retention: delete its oldest snapshots beyond `keep`, as part of the run.
    Only snapshots the schedule itself took count (recorded as PanelSnapshot); one a user made,
    whatever its name, is never touched."""
    records = PanelSnapshot.objects.filter(instance=tracker.operation.instance, scheduled=True)
    made = {record.name: record for record in records}
    ours = [s for s in summary["snapshots"] if s["name"] in made and made[s["name"]].matches(s)]
    ours.sort(key=lambda s: (s["created_at"] is None, s["created_at"] or 0, s["name"]))
    records.exclude(name__in=[s["name"] for s in ours]).delete()  # gone from LXD
    expired = [s["name"] for s in ours[: max(0, len(ours) - keep)]]
    if not expired:
        return ""
    tracker.enter("pruning", f"Keeping the newest {keep}; deleting {', '.join(expired)}.")
    for name in expired:
        state = tracker.follow(lxd.start_delete_snapshot(tracker.target, summary["name"], name))
        if state is not None and state.status != "Success":
            raise OperationFailed(f"The snapshot was taken, but deleting old {name!r} failed.",
                                  state.error, describe_state(summary))  # fmt: skip
        records.filter(name=name).delete()
    return f" Deleted {len(expired)} older scheduled snapshot(s)."


def restore(operation: Operation) -> str:
    tracker, params = Tracker(operation), operation.params
    name, snap, stateful = operation.instance_name, params["snapshot"], params["stateful"]
    what = "running state and filesystem" if stateful else "filesystem only"
    tracker.enter("restoring", f"Restoring {name} to {snap!r} ({what}).")
    state = tracker.follow(lxd.start_restore(tracker.target, name, snap, stateful))
    if state is not None and state.status != "Success":
        raise fail(
            tracker,
            "Restore failed.",
            state.error,
            {
                "Stopped": "The container is STOPPED. Start it (it boots afresh), or retry the "
                "restore; the snapshot itself is unchanged.",
                "Running": "The container is still running as it was before.",
                "other": "Check the container's state on its page.",
            },
        )
    tracker.enter("verifying", f"Checking the container's state on {tracker.host.platform.name}.")
    summary = container_state(tracker, name)
    operation.container_state_after = describe_state(summary)
    if state is None and tracker.patience.ever_silent:
        raise lost_with_its_daemon(
            tracker, "restore", restore_left_unsure(tracker.host.platform.name, snap), summary
        )
    if stateful and (summary is None or summary["status"] != "Running"):
        raise OperationFailed(
            f"{tracker.host.platform.name} reported success but the container is "
            f"{describe_state(summary)}, not running.",
            state_after=describe_state(summary),
        )
    return f"Restored {snap!r} ({what}); the container is {describe_state(summary)}."


def lost_with_its_daemon(tracker: Tracker, step: str, unsure: str, summary):
    """The server stopped answering during `step` and came back without its operation (a
    restarted daemon forgets them): nothing says whether the step finished, and a container
    the server started again at its own start runs, but afresh. So the outcome says what is
    known and how to be sure (`unsure`), never that the state was restored."""
    server, host = tracker.host.platform.name, tracker.host.name
    return OperationFailed(
        f"{host}'s {server} stopped answering during the {step} and came back without its "
        f"operation. The container is {describe_state(summary)} on {host}. {unsure}",
        state_after=describe_state(summary),
    )


def restore_left_unsure(server: str, snap: str) -> str:
    """What a user is told when `server` cannot say whether restoring `snap` happened: it
    forgets its operations when it restarts, and may have started the container again
    afresh, so a running container is no proof either way. Whoever finds it out (the
    restore itself, or the aftercare when the host answers again) says the same."""
    return (
        f"{server} cannot say whether {snap!r} was restored (it forgets its operations when it "
        "restarts, and a container it started again runs afresh): if the container does not "
        f"hold the snapshot's state, restore {snap!r} again; the snapshot itself is unchanged."
    )


def delete_snapshot(operation: Operation) -> str:
    tracker, snap = Tracker(operation), operation.params["snapshot"]
    tracker.enter("deleting", f"Deleting snapshot {snap!r}.")
    state = tracker.follow(lxd.start_delete_snapshot(tracker.target, operation.instance_name, snap))
    if state is not None and state.status != "Success":
        raise OperationFailed(f"Deleting snapshot {snap!r} failed.", state.error)
    summary = container_state(tracker, operation.instance_name)
    if any(s["name"] == snap for s in (summary or {}).get("snapshots", [])):
        raise OperationFailed(
            f"{tracker.host.platform.name} reported success but snapshot {snap!r} still exists."
        )
    return f"Snapshot {snap!r} deleted."


# What each state change asks of LXD, the status it promises, and what to say on failure.
STATE_CHANGES: dict[str, dict] = {
    Operation.Kind.START: {"action": "start", "expect": "Running", "stage": "starting"},
    Operation.Kind.START_FRESH: {
        "action": "start",
        "expect": "Running",
        "stage": "starting",
        "stateful": False,
    },
    Operation.Kind.STOP: {"action": "stop", "expect": "Stopped", "stage": "stopping"},
    Operation.Kind.RESTART: {"action": "restart", "expect": "Running", "stage": "restarting"},
    Operation.Kind.STATEFUL_STOP: {
        "action": "stop",
        "expect": "Stopped",
        "stage": "checkpointing",
        "stateful": True,
    },
}


def change_state(operation: Operation) -> str:
    tracker, change = Tracker(operation), STATE_CHANGES[operation.kind]
    name = operation.instance_name
    before = container_state(tracker, name)
    if before is None:
        raise OperationFailed(f"{name} does not exist on {operation.source_host} any more.")
    restoring = change["action"] == "start" and before["stateful"] and "stateful" not in change
    stateful = change.get("stateful", restoring)
    stage = "restoring" if restoring else change["stage"]
    how = " from its saved state" if restoring else ""
    if operation.kind == Operation.Kind.STATEFUL_STOP:
        how = " statefully (CRIU checkpoints it to disk)"
        allow_checkpoint(tracker, name)
    tracker.enter(stage, f"Asking {tracker.host.platform.name} to {change['action']} {name}{how}.")
    lxd_operation = lxd.start_state_change(tracker.target, name, change["action"], stateful)
    state = tracker.follow(lxd_operation)
    if state is not None and state.status != "Success":
        raise state_change_failure(tracker, operation, restoring, state.error)
    tracker.enter("verifying", f"Checking the container's state on {tracker.host.platform.name}.")
    after = container_state(tracker, name)
    operation.container_state_after = describe_state(after)
    if restoring and state is None and tracker.patience.ever_silent:
        raise lost_with_its_daemon(
            tracker, "start", f"{tracker.host.platform.name} cannot say whether the container "
            "was restored from its saved state or started afresh: if its processes are not the "
            "ones it had, its running state was lost with the daemon.", after,
        )  # fmt: skip
    if after is None or after["status"] != change["expect"]:
        raise OperationFailed(
            f"{tracker.host.platform.name} reported success but the container is "
            f"{describe_state(after)}, not {change['expect'].upper()}.",
            state_after=describe_state(after),
        )
    if operation.kind == Operation.Kind.STATEFUL_STOP and not after["stateful"]:
        raise OperationFailed(
            "The container stopped but LXD kept no saved state.", state_after=describe_state(after)
        )
    outcomes: dict[str, str] = {
        Operation.Kind.STATEFUL_STOP: "Stopped with its state saved: starting it restores it.",
        Operation.Kind.START_FRESH: "Started without the saved state (it was discarded).",
    }
    return outcomes.get(
        operation.kind,
        f"The container is {describe_state(after)}"
        + (", restored from its saved state." if restoring else "."),
    )


def state_change_failure(tracker: Tracker, operation: Operation, restoring: bool, error: str):
    if operation.kind == Operation.Kind.STATEFUL_STOP:
        return fail(
            tracker,
            "Checkpoint failed.",
            error,
            {
                "Running": "The container is still running; nothing was lost.",
                "other": "The container is no longer running: start it from the container page.",
            },
        )
    if restoring:
        return fail(
            tracker,
            "Restoring the saved state failed.",
            error,
            {
                "Stopped": "The container is STOPPED. Start it without the saved state "
                "(the checkpoint is discarded), or retry.",
                "other": "Check the container's state on its page.",
            },
        )
    return fail(
        tracker,
        f"{operation.get_kind_display()} failed.",
        error,
        {
            "other": "The container was left as LXD has it.",
        },
    )


WORK: dict[str, Callable[[Operation], str]] = {
    Operation.Kind.SNAPSHOT: snapshot,
    Operation.Kind.STATEFUL_SNAPSHOT: snapshot,
    Operation.Kind.RESTORE: restore,
    Operation.Kind.DELETE_SNAPSHOT: delete_snapshot,
    **{kind: change_state for kind in STATE_CHANGES},
}
