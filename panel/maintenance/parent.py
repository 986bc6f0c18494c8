"""The parent operation of a host action. It launches one child operation per container of
its confirmed plan (the existing kinds: stateful stop, stop, start, migrate), in the plan's
order, at most PANEL_HOST_MAX_OPERATIONS at once (host slots bound them too), and ends when
its last child has ended, saying per container where it is and in which state.

It has no worker of its own: `advance` runs when it starts and whenever one of its children
ends (panel/operations/lifecycle.py sends it), and the reconciler runs it again if that job
was lost. Each `advance` holds the parent's row, so two children ending at once cannot both
launch the same next child. A cancel launches nothing more; running children end safely.
"""

from __future__ import annotations

import logging
import statistics

from django.conf import settings
from django.db import transaction

from panel.accounts.audit import audit
from panel.accounts.models import AuditEvent
from panel.hosts.models import Host, Instance
from panel.maintenance.models import MaintenancePlan
from panel.operations import lifecycle
from panel.operations.models import Operation
from panel.operations.requests import Busy, request_operation

logger = logging.getLogger(__name__)
Kind, Status = Operation.Kind, Operation.Status
KIND_OF_ACTION = {
    "stateful_stop": Kind.STATEFUL_STOP,
    "stop": Kind.STOP,
    "start": Kind.START,
    "migrate": Kind.MIGRATE,
}
VERBS = {"checkpoint": "Checkpointed", "evacuate": "Evacuated", "bring_back": "Brought back"}


def start(operation_id: int) -> None:
    """Claim the parent (it takes no host slot) and launch its first children."""
    if lifecycle.claim(operation_id).verdict == lifecycle.CLAIMED:
        advance(operation_id)


def advance(operation_id: int) -> None:
    with transaction.atomic():
        # of=("self",): PostgreSQL cannot lock the nullable side of the outer joins
        # (requested_by); only the parent's row is the lock anyway.
        parent = (
            Operation.objects.select_for_update(of=("self",))
            .select_related("source_host", "requested_by")
            .filter(pk=operation_id, kind=Kind.MAINTENANCE, status=Status.RUNNING)
            .first()
        )
        if parent is None:
            return  # ended already, or not claimed yet
        plan = MaintenancePlan.objects.filter(operation=parent).select_related("host").first()
        if plan is None:  # deleted by hand (the admin site): nothing more can be launched
            words = "Its plan was deleted, so nothing more was launched; see each child below."
            lifecycle.end_parent(parent, Status.FAILED, words)
            return
        children = {c.params.get("item"): c for c in parent.children.all()}
        not_started: dict[str, str] = parent.result.get("not_started", {})
        active = sum(child.is_active for child in children.values())
        waiting = [i for i, item in enumerate(plan.items) if item["action"]
                   and i not in children and str(i) not in not_started]  # fmt: skip
        while waiting and active < settings.HOST_MAX_OPERATIONS and not parent.cancel_requested:
            index = waiting.pop(0)
            child, refusal = launch(parent, plan, index)
            if child is None:
                not_started[str(index)] = refusal
            else:
                children[index], active = child, active + 1
        rows = report(plan, children, not_started, parent.cancel_requested)
        parent.result = {**parent.result, "not_started": not_started, "containers": rows}
        if active == 0 and (not waiting or parent.cancel_requested):
            status, outcome, state = verdict(plan, rows)
            lifecycle.end_parent(parent, status, outcome, state, progress_text(rows))
        else:
            first = (
                f"Launching the plan's {len(plan.actions())} children in order, at "
                f"most {settings.HOST_MAX_OPERATIONS} at once."
            )
            lifecycle.record_parent_progress(
                parent, "running", progress_text(rows), done(rows), first
            )


def launch(parent: Operation, plan: MaintenancePlan, index: int) -> tuple[Operation | None, str]:
    """Ask for one container's operation as a child of the parent; (None, why) when it
    cannot be asked for (gone, or busy with another operation)."""
    item = plan.items[index]
    instance = Instance.objects.present().select_related("host").filter(pk=item["instance"])
    found = instance.first()
    if found is None:
        return None, f"Not started: {item['name']} is no longer on {item['at']}."
    params: dict = {"item": index}
    fields: dict = {}
    if item["action"] == "migrate":
        target = Host.objects.filter(name=item["target"]).first()
        if target is None:
            return None, f"Not started: {item['target']} is no longer in the panel."
        params.update(pool="", keep_source=False, strategy=item["strategy"],
                      strategy_reason=item["strategy_reason"])  # fmt: skip
        fields = {"target_host": target, "target_name": found.name}
    kind = KIND_OF_ACTION[item["action"]]
    try:
        child = request_operation(found, kind, parent.requested_by, params, parent=parent, **fields)
    except Busy as busy:
        return None, f"Not started: {busy}."
    child.log(f"Part of maintenance operation #{parent.pk} ({plan.get_mode_display().lower()}).")
    audit(
        None,
        "maintenance.child",
        AuditEvent.Outcome.OK,
        "operation",
        str(child.pk),
        str(child),
        f"child of maintenance #{parent.pk} (plan #{plan.pk}): {item['fate']}",
        username=getattr(parent.requested_by, "username", ""),
    )
    return child, ""


def report(
    plan: MaintenancePlan, children: dict, not_started: dict[str, str], cancelled: bool
) -> list[dict]:
    """Per container of the plan: what was to happen, its child, where it is and in which
    state now (as its child ended it, or as the plan found it when nothing was done), and
    how long it was down."""
    down_since = checkpointed_at(plan)
    rows = []
    for index, item in enumerate(plan.items):
        child: Operation | None = children.get(index)
        as_planned = f"on {item['at']}, {item['status'].upper()}"
        row = {"name": item["name"], "action": item["action"], "fate": item["fate"],
               "target": item["target"], "child": child.pk if child else None,
               "downtime": downtime_of(child, down_since.get(item["name"]))}  # fmt: skip
        if child is not None:
            row["status"] = child.status
            row["where"] = where_after(child, item) if not child.is_active else child.stage
            row["outcome"] = child.outcome
        elif not item["action"]:
            row.update(status="nothing to do", where=f"{as_planned}, untouched", outcome="")
        elif str(index) in not_started:
            row.update(status="not started", where=f"{as_planned}, untouched",
                       outcome=not_started[str(index)])  # fmt: skip
        else:
            row.update(status="cancelled" if cancelled else "waiting",
                       where=f"{as_planned}, untouched", outcome="")  # fmt: skip
        rows.append(row)
    return rows


def checkpointed_at(plan: MaintenancePlan) -> dict:
    """For a bring back after a checkpoint in place: when each container's stateful stop
    began. It was down from then until its restore ended, the host's restart included."""
    earlier = plan.reverses
    if plan.mode != MaintenancePlan.Mode.BRING_BACK or earlier is None or earlier.operation is None:
        return {}
    stops = earlier.operation.children.filter(
        kind=Kind.STATEFUL_STOP, status=Status.SUCCEEDED
    ).values_list("instance_name", "started_at")
    return dict(stops)


def downtime_of(child: Operation | None, down_since) -> float | None:
    """A migration measures its own downtime; a restore after a checkpoint in place counts
    from the checkpoint."""
    if child is None:
        return None
    if (
        down_since
        and child.kind == Kind.START
        and child.finished_at
        and child.status == Status.SUCCEEDED
    ):
        return round((child.finished_at - down_since).total_seconds(), 2)
    return child.downtime_seconds


def where_after(child: Operation, item: dict) -> str:
    state = child.container_state_after or "state not recorded"
    if state.startswith("on ") or ":" in state:
        return state  # a migration's "on host2, RUNNING", a reconciler's "host1: RUNNING; ..."
    return f"on {item['at']}, {state}"


ENDED = {Status.SUCCEEDED, Status.FAILED, Status.INTERRUPTED, Status.CANCELLED}


def done(rows: list[dict]) -> float:
    acting = [row for row in rows if row["action"]]
    return sum(row["status"] in ENDED for row in acting) / len(acting) if acting else 1.0


def progress_text(rows: list[dict]) -> str:
    acting = [row for row in rows if row["action"]]
    ended = sum(row["status"] in ENDED for row in acting)
    running = sum(row["status"] == Status.RUNNING for row in acting)
    text = f"{ended} of {len(acting)} done, {running} running"
    downtimes = [row["downtime"] for row in acting if row["downtime"] is not None]
    if downtimes:
        text += (
            f"; downtime so far: median {statistics.median(downtimes):.2f} s, "
            f"max {max(downtimes):.2f} s"
        )
    return text


def verdict(plan: MaintenancePlan, rows: list[dict]) -> tuple[str, str, str]:
    """The parent's end: succeeded when every child did, cancelled when a cancel left some
    not launched, failed otherwise; the outcome names every container that did not end as
    planned, with where it is and in which state."""
    acting = [row for row in rows if row["action"]]
    good = [row for row in acting if row["status"] == Status.SUCCEEDED]
    bad = [row for row in acting if row["status"] not in (Status.SUCCEEDED, "cancelled")]
    left = [row for row in acting if row["status"] == "cancelled"]
    verb = VERBS[plan.mode]
    outcome = f"{verb} {len(good)} of {len(acting)} containers of {plan.host.name}."
    if plan.mode == MaintenancePlan.Mode.CHECKPOINT and good:
        outcome += " Restart the host (or LXD), then bring them back."
    if bad:
        outcome += " Not as planned: " + "; ".join(
            f"{row['name']} ({row['status']}): {row['where']}" for row in bad
        )
        outcome += "."
    if left:
        names = ", ".join(row["name"] for row in left)
        outcome += f" Cancelled before they started, untouched: {names}."
    untouched = [row["name"] for row in rows if not row["action"]]
    if untouched:
        outcome += f" Left as they were (see the plan): {', '.join(untouched)}."
    status = Status.FAILED if bad else Status.CANCELLED if left else Status.SUCCEEDED
    state = f"{len(good)} of {len(acting)} as planned"
    return status, outcome, state


def live_rows(parent: Operation) -> list[dict]:
    """The parent's report as of now, for its page: each row with its child operation (its
    stage and progress), read in two queries."""
    plan = MaintenancePlan.objects.filter(operation=parent).select_related("host").first()
    if plan is None:
        return []
    children = {c.params.get("item"): c for c in parent.children.select_related("target_host")}
    not_started = parent.result.get("not_started", {})
    rows = report(plan, children, not_started, parent.cancel_requested)
    for index, row in enumerate(rows):
        row["operation"] = children.get(index)
        row["expected"] = plan.items[index].get("expected_downtime")
    return rows
