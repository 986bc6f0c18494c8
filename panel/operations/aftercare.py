"""What is left to do once an operation has ended while one of its hosts did not answer.

An operation ends within its bound even when a host is away; what it could not do there is
written down as aftercare items on the operation (`result["aftercare"]`):

- home: the container lives on that host; verify it there (and free it from a stuck CRIU
  dump, or start it from its saved state) once its LXD answers;
- stray: a partial or abandoned copy on that host; remove it once it answers;
- left behind: the source copy of a migration whose target was not verified yet; remove it
  once the container is verified running at home;
- decide: the target went silent while starting the moved copy; once it answers, the copy
  that runs is the container (the other is removed), else the original is started again.

The reconciler (every minute) asks each item's host again. When it answers, the item becomes
an ordinary operation of its own (remove the copy, free it from the dump, start it), watched
and reported like any other, and a line on the original operation's timeline says what was
found. Nothing is done to a container that has an active operation: it waits for the next
round.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from panel import lxd
from panel.hosts.connection import target_for
from panel.hosts.inventory import record_instance
from panel.hosts.models import Host, Instance
from panel.operations import lifecycle
from panel.operations.models import Operation
from panel.operations.requests import request_operation

logger = logging.getLogger(__name__)
HOME, STRAY, LEFT_BEHIND, DECIDE = "home", "stray", "left behind", "decide"
KEEP_TRYING_DAYS = 7


def add(operation: Operation, host: Host, name: str, role: str, dumps=None) -> None:
    """Write an item down on the operation (saved with it when it ends)."""
    items = operation.result.setdefault("aftercare", [])
    if any(i["host"] == host.pk and i["name"] == name and i["role"] == role for i in items):
        return
    items.append({"host": host.pk, "host_name": host.name, "name": name, "role": role,
                  "dumps": list(dumps or []), "since": timezone.now().isoformat(),
                  "done": ""})  # fmt: skip


def open_items(operation: Operation) -> list[dict]:
    return [item for item in operation.result.get("aftercare", []) if not item["done"]]


def pending_operations():
    cutoff = timezone.now() - dt.timedelta(days=KEEP_TRYING_DAYS)
    ended = Operation.objects.exclude(status__in=Operation.ACTIVE)
    candidates = ended.filter(finished_at__gte=cutoff, result__has_key="aftercare")
    return [op for op in candidates.select_related("source_host", "target_host")
            if open_items(op)]  # fmt: skip


def run_all() -> int:
    """One round: every pending item whose host answers now. Returns the items settled. A
    host that did not answer is not asked again in the same round (each try may wait for a
    connection timeout)."""
    settled, silent = 0, set()
    for operation in pending_operations():
        for item in open_items(operation):
            if item["host"] in silent:
                continue
            try:
                done = settle_item(operation, item)
            except lxd.LXDUnreachable as error:
                silent.add(item["host"])
                logger.info("aftercare of #%s: %s does not answer: %s", operation.pk,
                            item["host_name"], error)  # fmt: skip
                continue
            except lxd.LXDError as error:
                logger.info("aftercare of #%s on %s: %s", operation.pk, item["host_name"], error)
                continue
            if done:
                item["done"] = done
                settled += 1
                operation.log(f"Aftercare on {item['host_name']}: {done}", "aftercare")
        lifecycle.record_aftercare(operation)
    return settled


def settle_item(operation: Operation, item: dict) -> str:
    """Ask the item's host; '' while it does not answer or the container is busy, else what
    was found and what was asked for."""
    host = Host.objects.filter(pk=item["host"]).first()
    if host is None:
        return "the host was removed from the panel: nothing left to do."
    read_at = timezone.now()
    summary = lxd.instance_summary(target_for(host), item["name"])  # LXDUnreachable: next round
    instance = record_instance(host.pk, item["name"], summary, read_at)
    if item["role"] == DECIDE:
        return decide(operation, host, instance)
    if instance is None:
        return f"{host.name} answers again and has no copy of {item['name']}."
    if Operation.objects.active().filter(instance=instance).exists():
        return ""  # the container is busy: next round
    status = summary["status"] if summary else "Gone"
    if item["role"] == HOME:
        return settle_home(operation, item, instance, status, bool(summary and summary["stateful"]))
    if item["role"] == LEFT_BEHIND and not home_verified(operation):
        return ""
    follow_up = ask(instance, Operation.Kind.DELETE_COPY, operation, {"stop_first": True})
    if not follow_up:
        return ""
    return f"{host.name} answers again; its copy is {status.upper()}: removing it ({follow_up})."


def settle_home(operation: Operation, item: dict, instance: Instance, status: str,
                saved_state: bool) -> str:  # fmt: skip
    host = instance.host.name
    if status == "Running" and item["dumps"]:
        follow_up = ask(instance, Operation.Kind.RELEASE_DUMP, operation,
                        {"dump_operations": item["dumps"]})  # fmt: skip
        return follow_up and f"{host} answers again; freeing the container ({follow_up})."
    if status == "Stopped" and saved_state:
        follow_up = ask(instance, Operation.Kind.START, operation, {})
        return (
            follow_up and f"{host} answers again; starting it from its saved state ({follow_up})."
        )
    return f"{host} answers again: the container is {status.upper()} there."


def decide(operation: Operation, host: Host, copy: Instance | None) -> str:
    """The target answers again after going silent while it started the moved copy: the copy
    that runs is the container; else the copy goes and the original starts again."""
    original = (
        Instance.objects.present()
        .filter(host=operation.source_host, name=operation.instance_name)
        .first()
    )
    busy = Operation.objects.active().filter(instance__in=[i for i in (copy, original) if i])
    if busy.exists():
        return ""
    if copy is not None and copy.status == "Running":
        if original is None:
            return f"{host.name} answers again: the container runs there."
        removal = ask(original, Operation.Kind.DELETE_COPY, operation, {})
        return removal and (
            f"{host.name} answers again and the container runs there (the migration's start "
            f"had finished): removing the original on {original.host.name} ({removal})."
        )
    removal = ask(copy, Operation.Kind.DELETE_COPY, operation, {"stop_first": True}) if copy else ""
    if copy is not None and not removal:
        return ""
    start = ask(original, Operation.Kind.START, operation, {}) if original else ""
    done = f"removing its copy ({removal}); " if removal else "it has no copy; "
    where = original.host.name if original else "the source host"
    return f"{host.name} answers again and the container does not run there: {done}" + (
        f"starting the original on {where} ({start})." if start else "the original stays."
    )


def home_verified(operation: Operation) -> bool:
    homes = [i for i in operation.result.get("aftercare", []) if i["role"] == HOME]
    return all(i["done"] for i in homes)


def ask(instance: Instance, kind: str, origin: Operation, params: dict) -> str:
    """Request the follow-up operation; '' when the container just became busy (one active
    operation per container still holds: next round)."""
    try:
        follow_up = request_operation(instance, kind, None, {**params, "aftercare_of": origin.pk})
    except lifecycle.Busy:
        return ""
    return f"operation #{follow_up.pk}"


def copy_left(operation: Operation) -> Instance | None:
    """The copy a migration left on the host where the container does not live (the source
    copy after a move, or a partial copy on the target), while it is still there; None when
    there is none, or while it is not decided which copy is the container."""
    if operation.kind != Operation.Kind.MIGRATE or None in (operation.source_host,
                                                           operation.target_host):  # fmt: skip
        return None
    state, source = operation.container_state_after, operation.known_source_host()
    if "may have started" in state or operation.is_active:
        return None
    if state.startswith(f"on {source.name},"):
        host, name = operation.known_target_host(), operation.target_name
    else:
        host, name = source, operation.instance_name
    if touched_since(operation, host, name):
        return None  # a later operation worked on that name there: not this one's leftover
    return Instance.objects.present().filter(host=host, name=name).first()


def touched_since(operation: Operation, host: Host, name: str) -> bool:
    later = Operation.objects.filter(pk__gt=operation.pk)
    return later.filter(
        Q(source_host=host, instance_name=name) | Q(target_host=host, target_name=name)
    ).exists()


def left_by(copy: Instance) -> Operation | None:
    """The recent migration that left this copy behind, if it is such a copy."""
    cutoff = timezone.now() - dt.timedelta(days=KEEP_TRYING_DAYS)
    recent = (
        Operation.objects.filter(kind=Operation.Kind.MIGRATE, finished_at__gte=cutoff)
        .filter(
            Q(source_host=copy.host, instance_name=copy.name)
            | Q(target_host=copy.host, target_name=copy.name)
        )
        .select_related("source_host", "target_host")
        .order_by("-finished_at")[:5]
    )
    return next((op for op in recent if copy_left(op) == copy), None)
