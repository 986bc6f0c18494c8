"""The pre-flight of a whole host action, on a worker: read the host (and every other host
that might take its containers) from LXD again, then let panel/maintenance/planning.py
decide. The plan is stored on its MaintenancePlan; nothing is done to any container here."""

from __future__ import annotations

from panel.hosts.inventory import sync
from panel.hosts.models import Host, Instance
from panel.hosts.risks import checkpoint_risks
from panel.maintenance import history, planning
from panel.maintenance.mode import closed_because
from panel.maintenance.models import MaintenancePlan
from panel.operations.kinds import checkpoint_capability
from panel.operations.models import Operation
from panel.operations.preflight import Side
from panel.operations.requests import StrategyRefused, resolve_strategy
from panel.operations.runner import OperationFailed, Tracker
from panel.operations.strategy import pools_for

Mode = MaintenancePlan.Mode


def draw_up(operation: Operation) -> str:
    """The work of a maintenance pre-flight operation: the plan, stored, summarised."""
    plan = MaintenancePlan.objects.select_related("host", "reverses").get(preflight=operation)
    tracker = Tracker(operation)
    host = plan.host
    tracker.enter("reading", f"Reading {host.name} and its containers from LXD.")
    read_or_fail(host)
    skip = set(plan.choices.get("skip", []))
    if plan.mode == Mode.CHECKPOINT:
        can = checkpoint_capability(host)
        refusal = "" if can.allowed else f"{host.name} cannot checkpoint: {can.reason}"
        subjects = [subject_of(i, host) for i in host.instances.present()]
        items = planning.plan_checkpoint(
            subjects, host.name, refusal, plan.policy, skip, history.checkpoint_downtime(host)
        )
    elif plan.mode == Mode.EVACUATE:
        tracker.enter("checking", "Asking every other host what taking these containers needs.")
        items = evacuation(plan, host, skip)
    else:
        tracker.enter("checking", "Finding where each container is now.")
        items = bring_back(plan, host, skip)
    plan.items = [item.as_dict() for item in items]
    plan.summary = planning.summarise(items, plan.mode)
    plan.save(update_fields=["items", "summary"])
    operation.result = {"plan": plan.pk}
    return f"Plan #{plan.pk} drawn up: {plan.summary}"


def read_or_fail(host: Host) -> None:
    sync(host)
    host.refresh_from_db()
    if host.status != Host.Status.ONLINE:
        raise OperationFailed(
            f"{host.name} does not answer, so no plan could be drawn up; nothing was done to "
            "any container. Ask again once it answers.",
            host.last_error,
            "untouched",
        )


def side_of(host: Host) -> Side:
    """A host's side for the pre-flight checks, from what its sync just stored."""
    reachable = host.status == Host.Status.ONLINE
    trusted = host.facts.get("auth") == "trusted"
    return Side(host.name, reachable, trusted, host.last_error, {**host.facts, **host.agent_facts})


def subject_of(
    instance: Instance, host: Host, towards: list[Host] | None = None
) -> planning.Subject:
    """One container as the planner sees it, with the recommended strategy towards each
    host it might go to (operations.requests.resolve_strategy, the migration form's own)."""
    config, devices = instance.expanded_config, instance.expanded_devices
    subject = planning.Subject(
        name=instance.name,
        instance=instance.pk,
        status=instance.status,
        definition={
            "architecture": instance.architecture,
            "profiles": instance.profiles,
            "expanded_devices": devices,
        },
        risks=checkpoint_risks(config, devices),
        blockers=planning.checkpoint_blockers(
            instance.type, config, devices, host.facts.get("server", "lxd")
        ),
        memory=int(instance.state.get("memory_usage") or 0),
        started_at=instance.last_used_at,
        stateful=instance.stateful,
    )
    for target in towards or []:
        try:
            subject.strategies[target.name] = resolve_strategy(instance, target, "auto")
        except StrategyRefused as refused:
            subject.strategies[target.name] = ("cold", str(refused))
        subject.expected[target.name] = history.migration_downtimes(
            host, target, pools_for(instance, target, "")
        )
    return subject


def candidate_of(host: Host, source: Host) -> planning.Candidate:
    facts = host.facts
    total, used = facts.get("memory_total") or 0, facts.get("memory_used")
    return planning.Candidate(
        side=side_of(host),
        closed=closed_because(host),
        taken=set(host.instances.present().values_list("name", flat=True)),
        free_memory=total - used if total and used is not None else None,
        expected=history.migration_downtimes(source, host),
    )


def other_hosts(host: Host) -> list[Host]:
    others = list(Host.objects.enrolled().exclude(pk=host.pk))
    for other in others:
        if closed_because(other):
            continue  # it takes nothing: no need to ask it
        sync(other)
        other.refresh_from_db()
    return others


def evacuation(plan: MaintenancePlan, host: Host, skip: set[str]) -> list[planning.Item]:
    others = other_hosts(host)
    candidates = [candidate_of(other, host) for other in others]
    subjects = [subject_of(i, host, others) for i in host.instances.present()]
    chosen = dict(plan.choices.get("targets", {}))
    return planning.plan_evacuation(subjects, side_of(host), candidates, plan.policy, chosen, skip)


def bring_back(plan: MaintenancePlan, home: Host, skip: set[str]) -> list[planning.Item]:
    """Where each container of the reversed plan is now: at home, or where it was moved."""
    earlier = plan.reverses
    if earlier is None:
        raise OperationFailed("There is nothing to bring back: no checkpoint or evacuation.")
    moved_to = {item["target"] for item in earlier.actions() if item["action"] == "migrate"}
    hosts = {h.name: h for h in Host.objects.filter(name__in=moved_to)}
    for away_host in hosts.values():
        sync(away_host)
        away_host.refresh_from_db()
    away = []
    for item in earlier.actions():
        moved = hosts.get(item["target"])
        places = [home, moved] if moved else [home]
        rows = Instance.objects.present().select_related("host")
        found = {i.host_id: i for i in rows.filter(host__in=places, name=item["name"])}
        # Where it was moved to first: a stopped copy left at home is not the container.
        here = (found.get(moved.pk) if moved else None) or found.get(home.pk)
        if here is None:
            away.append(planning.Away(item, None, ""))
            continue
        towards = [home] if here.host_id != home.pk else []
        away.append(planning.Away(item, subject_of(here, here.host, towards), here.host.name))
    home_candidate = planning.Candidate(
        side=side_of(home),
        closed="",
        taken=set(home.instances.present().values_list("name", flat=True)),
        expected={},
    )
    sides = {name: side_of(h) for name, h in hosts.items()}
    # Each moved container's expected downtime home is its subject's (subject_of above).
    return planning.plan_bring_back(
        away, home_candidate, sides, plan.policy, skip, history.restore_seconds(home)
    )
