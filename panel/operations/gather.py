"""The migration pre-flight, live: ask both hosts at once what a migration needs, then run
the pure checks of panel/operations/preflight.py on the answers. A pre-flight operation is
only this; every migration starts with it again, in case anything changed since."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from panel import lxd
from panel.hosts.models import Host
from panel.maintenance.mode import closed_because
from panel.operations.models import Operation
from panel.operations.preflight import Check, Side, run_checks
from panel.operations.runner import Tracker
from panel.operations.storage import PoolPair, pool_pair


class Gathered(NamedTuple):
    """The checks, the container's definition read for them, the pools it moves between with
    their drivers (recorded with a migration: panel/operations/strategy.py keys its measured
    downtimes by them), and the host PID of its init when it runs (the same PID after a
    failure: the same processes)."""

    checks: list[Check]
    container: dict
    pools: PoolPair
    init_pid: int | None


def side_of(host: Host, target: lxd.Target, recheck: bool = False) -> Side:
    """A migration's `recheck` takes the host's CPU and memory from its last sync (they do
    not change between a pre-flight and the click); everything else is asked anew."""
    try:
        facts = {**lxd.server_facts(target, host.facts if recheck else None), **host.agent_facts}
    except lxd.LXDError as error:
        return Side(host.name, False, False, str(error), {})
    trusted = facts.get("auth") == "trusted"
    return Side(host.name, True, trusted, "", facts)


def gather_checks(
    operation: Operation, source: Tracker, target: Tracker, recheck: bool = False
) -> Gathered:
    """The pre-flight checks and what they read. Both hosts are asked at once (a dozen
    requests each): this runs at the start of every migration. Each side asks through its
    Tracker's target, so a worker that lost its operation stops."""

    clients = lxd.lend_clients()  # each helper asks one host; this thread only waits

    def ask_source() -> tuple[Side, dict, int | None]:
        lxd.borrow_clients(clients)
        side = side_of(source.host, source.target, recheck)
        if not (side.reachable and side.trusted):
            return side, {}, None
        try:
            definition = lxd.instance_definition(source.target, operation.instance_name)
            running = definition.get("status") == "Running"
            pid = lxd.instance_init_pid(source.target, operation.instance_name) if running else None
        except lxd.LXDUnreachable as error:  # it went away between two requests
            return Side(side.name, False, False, str(error), {}), {}, None
        return side, definition, pid

    def ask_target() -> tuple[Side, bool]:
        lxd.borrow_clients(clients)
        side = side_of(target.host, target.target, recheck)
        if not (side.reachable and side.trusted):
            return side, False
        try:
            return side, lxd.instance_status(target.target, operation.target_name) is not None
        except lxd.LXDUnreachable as error:
            return Side(side.name, False, False, str(error), {}), False

    closed = closed_because(operation.target_host, for_operation=operation)
    with ThreadPoolExecutor(max_workers=2) as pool:
        asked_source, asked_target = pool.submit(ask_source), pool.submit(ask_target)
        (source_side, container, init_pid), (target_side, taken) = (
            asked_source.result(),
            asked_target.result(),
        )
    target_side.facts["maintenance"] = closed
    pool_name = operation.params.get("pool", "")
    checks = run_checks(
        source_side, target_side, container, pool_name, operation.target_name, taken
    )
    pools = pool_pair(source_side.facts, target_side.facts, container, pool_name)
    return Gathered(checks, container, pools, init_pid)


def preflight(operation: Operation) -> str:
    source = Tracker(operation)
    target = Tracker(operation, host=operation.known_target_host())
    source.enter("checking", "Asking both hosts what the migration needs.")
    checks, _, pools, _ = gather_checks(operation, source, target)
    operation.result = {"checks": [check.as_dict() for check in checks], "pools": pools.as_dict()}
    failed = [check for check in checks if check.status == "fail"]
    if not failed:
        return f"All {len(checks)} checks passed or are advisory."
    return f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(
        check.label for check in failed
    )
