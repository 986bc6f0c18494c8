"""One place for the rules every kind of operation shares: which task runs it, and whether a
host can checkpoint (what stateful kinds and the CRIU migration strategies need)."""

from __future__ import annotations

from panel.hosts.capabilities import Capability
from panel.hosts.models import Host
from panel.operations.models import Operation
from panel.operations.preflight import criu_between

Kind = Operation.Kind
RUN_OPERATION = "panel.operations.tasks.run_operation"
RUN_MIGRATION_OPERATION = "panel.operations.tasks.run_migration_operation"
# The kinds that involve two hosts run on the migration task; all others on run_operation.
MIGRATION_KINDS = {Kind.PREFLIGHT, Kind.MIGRATE, Kind.DELETE_COPY}
STATEFUL_KINDS = {Kind.STATEFUL_SNAPSHOT, Kind.STATEFUL_STOP}
# A host's maintenance (panel/maintenance/) runs on its own tasks.
HOST_TASKS: dict[str, str] = {
    Kind.MAINTENANCE_PLAN: "panel.maintenance.tasks.draw_up_plan",
    Kind.MAINTENANCE: "panel.maintenance.tasks.start_maintenance",
}


def task_for(kind: str) -> str:
    if kind in HOST_TASKS:
        return HOST_TASKS[kind]
    return RUN_MIGRATION_OPERATION if kind in MIGRATION_KINDS else RUN_OPERATION


def checkpoint_capability(host: Host) -> Capability:
    """Can this host checkpoint and restore its containers (stateful snapshot, stop, start)?"""
    return host.capability("stateful_stop")


def criu_refusal(source: Host, target: Host) -> str:
    """Why the two hosts cannot take part in a CRIU migration strategy (live,
    checkpoint-move-restore), or '' when they can: between LXD and Incus never (pre-flight's
    `platforms` check says why), otherwise when a host cannot checkpoint."""
    between = criu_between(source.platform, target.platform)
    if between:
        return between
    for host in (source, target):
        capability = host.capability("live_migration")
        if not capability.allowed:
            return f"{host.name} cannot checkpoint containers ({capability.reason})"
    return ""


def criu_possible(source: Host, target: Host) -> bool:
    return not criu_refusal(source, target)
