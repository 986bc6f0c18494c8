"""Bug-report bundles: collect from LXD's API and from every involved host's agent, then hand
everything to panel/bundles.py to redact, cap, describe and pack.

The agents are asked first and answer while the API items are fetched, so a bundle takes as
long as the slowest side, and never longer than PANEL_AGENT_TIMEOUT_SECONDS plus the API
calls: a silent agent costs its items (each one marked missing, with why), not the bundle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass

import yaml
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from panel import bundles, lxd
from panel.models import Bundle, Host, Operation
from workers.agent import HOST_ITEMS, INSTANCE_LOG_DIR_ITEM, collect_task, probe_task, queue_for
from workers.celery import app
from workers.hosts import target_for

logger = logging.getLogger(__name__)


@dataclass
class Side:
    """One host of the bundle and the name the container has there."""

    host: Host
    container: str


def sides_of(bundle: Bundle) -> list[Side]:
    operation = bundle.operation
    if operation is None:
        return [Side(bundle.instance.host, bundle.instance_name)] if bundle.instance else []
    sides = [Side(operation.source_host, operation.instance_name)] if operation.source_host else []
    if operation.target_host and operation.target_host_id != operation.source_host_id:
        target_name = getattr(operation, "target_name", "") or operation.instance_name
        sides.append(Side(operation.target_host, target_name))
    return sides


def ask_agent(host: Host, task, *args):
    """Send a task to the host's agent, or None when the host has no known identity yet.
    It expires with the wait: an agent that comes back later must not work for nobody."""
    fingerprint = host.facts.get("certificate_fingerprint", "")
    if not fingerprint:
        return None
    return task.apply_async(
        args=args, queue=queue_for(fingerprint), expires=settings.AGENT_TIMEOUT_SECONDS
    )


def agent_reply(host: Host, pending, deadline: float) -> tuple[dict | None, str]:
    """(reply, why not): waits at most until the shared deadline, then forgets the result."""
    if pending is None:
        return None, "the host's identity (server certificate) is not known yet: sync the host"
    try:
        reply = pending.get(
            timeout=max(0.1, deadline - time.monotonic()), disable_sync_subtasks=False
        )
    except CeleryTimeout:
        queue = queue_for(host.facts["certificate_fingerprint"])
        return None, (
            f"no agent answered on queue {queue} within {settings.AGENT_TIMEOUT_SECONDS} s: "
            f"is the agent running on {host.name}? (docs/agent.md)"
        )
    except Exception as error:
        return None, f"the agent on {host.name} failed: {error.__class__.__name__}: {error}"
    finally:
        pending.forget()  # the reply holds unredacted host files: keep it no longer than needed
    Host.objects.filter(pk=host.pk).update(agent_facts=reply["facts"], agent_seen_at=timezone.now())
    return reply, ""


def api_items(side: Side, versions: dict, redactor: bundles.Redactor) -> list[bundles.Item]:
    """What LXD's API gives for one host: `lxc info`, and the container's info, expanded
    config, log files and (when it runs) its mountinfo."""
    host, name, target = side.host.name, side.container, target_for(side.host)
    prefix = f"{host}/{bundles.member_name(name)}"
    # Config values are masked while still structured (a YAML block value spans lines), and
    # the redactor learns them to remove them from every other item too.
    try:
        info = lxd.bundle_server_info(target)
    except lxd.LXDError as error:
        # LXD does not answer (stopped, killed, unreachable): every API item is missing, each
        # named, so the report says exactly what a maintainer will not find.
        why = str(error)
        return [bundles.missing(f"{host}/lxc-info.yaml", host, "LXD API: GET /1.0", why)] + [
            bundles.missing(f"{prefix}/{what}", host, f"LXD API: {source}", why)
            for what, source in INSTANCE_API_ITEMS
        ]
    environment = info.get("environment", {})
    versions[host] = {"lxd": environment.get("server_version", "?"),
                      "kernel": environment.get("kernel_version", "?")}  # fmt: skip
    counts: Counter = Counter()
    info["config"] = redactor.config(info.get("config", {}), counts)
    items = [as_yaml(f"{host}/lxc-info.yaml", host, "LXD API: GET /1.0 (lxc info)", info, counts)]
    try:
        instance = lxd.bundle_instance(target, name)
    except lxd.LXDError as error:
        instance, why = None, str(error)
    else:
        why = f"no container named {name} on {host}"
    if instance is None:
        return items + [
            bundles.missing(f"{prefix}/{what}", host, f"LXD API: {source}", why)
            for what, source in INSTANCE_API_ITEMS
        ]
    config_counts = Counter()
    expanded = {
        "architecture": instance.get("architecture"),
        "config": redactor.config(instance.get("expanded_config", {}), config_counts),
        "devices": instance.get("expanded_devices", {}),
        "ephemeral": instance.get("ephemeral"),
        "profiles": instance.get("profiles"),
        "stateful": instance.get("stateful"),
        "description": instance.get("description"),
    }
    summary = {key: instance.get(key) for key in ("name", "status", "type", "architecture",
               "location", "created_at", "last_used_at", "stateful", "state")}  # fmt: skip
    summary["snapshots"] = [{key: snap.get(key) for key in ("name", "created_at", "expires_at",
                            "stateful")} for snap in instance.get("snapshots") or []]  # fmt: skip
    items += [
        as_yaml(f"{prefix}/lxc-info.yaml", host, "LXD API: lxc info " + name, summary, None),
        as_yaml(f"{prefix}/config-expanded.yaml", host,
                f"LXD API: lxc config show --expanded {name}", expanded, config_counts),
    ]  # fmt: skip
    items += log_items(target, host, name, prefix)
    items.append(mountinfo_item(target, host, name, prefix, instance.get("status", "")))
    return items


INSTANCE_API_ITEMS = [
    ("lxc-info.yaml", "lxc info <container>"),
    ("config-expanded.yaml", "lxc config show --expanded <container>"),
    ("logs", "GET /1.0/instances/<container>/logs"),
    ("mountinfo.txt", "lxc exec <container> -- cat /proc/self/mountinfo"),
]


def as_yaml(name, host, source, document, counts) -> bundles.Item:
    text = yaml.safe_dump(document, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return bundles.Item(name=name, host=host, source=source, content=text,
                        redactions=counts if counts is not None else Counter())  # fmt: skip


def log_items(target: lxd.Target, host: str, name: str, prefix: str) -> list[bundles.Item]:
    source = f"LXD API: GET /1.0/instances/{name}/logs"
    try:
        logs = lxd.instance_logs(target, name, settings.BUNDLE_ITEM_MAX_BYTES)
    except lxd.LXDError as error:
        return [bundles.missing(f"{prefix}/logs", host, source, str(error))]
    if not logs:
        return [bundles.missing(f"{prefix}/logs", host, source, "LXD lists no log files")]
    return [
        bundles.Item(name=f"{prefix}/logs/{bundles.member_name(filename)}", host=host,
                     source=f"{source}/{filename}", content=text, truncated=truncated,
                     truncation_note="LXD's file was longer than the item cap" if truncated
                     else "")
        for filename, text, truncated in logs
    ]  # fmt: skip


def mountinfo_item(target, host: str, name: str, prefix: str, status: str) -> bundles.Item:
    source = f"LXD API: lxc exec {name} -- cat /proc/self/mountinfo"
    if status != "Running":
        why = f"the container is {status.upper() or 'not running'}: it has a mountinfo only " \
              "while it runs"  # fmt: skip
        return bundles.missing(f"{prefix}/mountinfo.txt", host, source, why)
    try:
        text = lxd.container_mountinfo(target, name)
    except lxd.LXDError as error:
        return bundles.missing(f"{prefix}/mountinfo.txt", host, source, str(error))
    return bundles.Item(name=f"{prefix}/mountinfo.txt", host=host, source=source, content=text)


def agent_items(side: Side, reply: dict | None, why: str, checkpoints: list, versions: dict):
    host = side.host.name
    if reply is None:
        versions.setdefault(host, {})["criu"] = "unknown (no agent)"
        expected = [*HOST_ITEMS, (f"{INSTANCE_LOG_DIR_ITEM[0]}/{side.container}",
                                  INSTANCE_LOG_DIR_ITEM[1])]  # fmt: skip
        return [bundles.missing(f"{host}/{name}", host, source, why) for name, source in expected]
    versions.setdefault(host, {})["criu"] = reply["facts"].get("criu_version") or "?"
    for listing in reply["checkpoints"]:
        checkpoints.append({
            "host": host, "label": listing["label"], "path": listing["path"],
            "file_count": listing["file_count"], "stats": listing["stats"],
            "stats_note": listing["stats_note"],
            "tree": bundles.checkpoint_tree(listing["path"], listing["files"]),
            "stats_lines": bundles.stats_summary(listing["stats"]),
        })  # fmt: skip
    return [
        bundles.Item(
            name=f"{host}/" + bundles.member_name(*entry["name"].split("/")),
            host=host,
            source=entry["source"],
            content=entry["content"],
            reason=entry["reason"],
            truncated=entry["truncated"],
            truncation_note="the agent kept the end of the file (item cap)"
            if entry["truncated"]
            else "",
        )
        for entry in reply["items"]
    ]


def build(bundle: Bundle) -> None:
    started = time.monotonic()
    sides = sides_of(bundle)
    pending = [ask_agent(side.host, collect_task, [side.container], settings.BUNDLE_ITEM_MAX_BYTES)
               for side in sides]  # fmt: skip
    deadline = time.monotonic() + settings.AGENT_TIMEOUT_SECONDS
    items: list[bundles.Item] = []
    versions: dict = {}
    checkpoints: list[dict] = []
    redactor = bundles.Redactor(settings.BUNDLE_REDACT_PATTERNS)
    for side in sides:
        items += api_items(side, versions, redactor)
    for side, asked in zip(sides, pending, strict=True):
        reply, why = agent_reply(side.host, asked, deadline)
        items += agent_items(side, reply, why, checkpoints, versions)
    limits = bundles.Limits(settings.BUNDLE_ITEM_MAX_BYTES, settings.BUNDLE_TOTAL_MAX_BYTES)
    entries = bundles.finalise(items, redactor, limits)
    context = report_context(bundle, [side.host.name for side in sides], versions, checkpoints)
    report = bundles.render_report(context, entries, redactor)
    manifest = {
        "bundle": bundle.pk,
        "created_at": bundle.created_at.isoformat(),
        "operation": bundle.operation_id,
        "container": bundle.instance_name,
        "hosts": [side.host.name for side in sides],
        "limits": {"item_bytes": limits.item_bytes, "total_bytes": limits.total_bytes},
        "redaction": "trust passwords, private keys, tokens, environment.* values, cloud-init "
        f"user data, and {len(settings.BUNDLE_REDACT_PATTERNS)} admin pattern(s)",
        "summary": bundles.summary(entries),
        "items": entries,
        "checkpoints": checkpoints,
        "collection_seconds": round(time.monotonic() - started, 3),
    }
    folder = f"lxd-bundle-{bundle.pk}"
    data = bundles.build_tarball(folder, report, manifest, items, bundle.created_at.timestamp())
    bundle.file.save(f"{folder}.tar.gz", ContentFile(data), save=False)
    bundle.size, bundle.sha256 = len(data), hashlib.sha256(data).hexdigest()
    bundle.manifest, bundle.report = manifest, report
    bundle.status, bundle.finished_at = Bundle.Status.READY, timezone.now()
    bundle.save()


def report_context(bundle, hosts, versions, checkpoints) -> bundles.ReportContext:
    operation = bundle.operation
    context = bundles.ReportContext(
        title=f"LXD bug report: {bundle.instance_name or 'host'}"
        + (f", operation #{operation.pk} ({operation.get_kind_display()})" if operation else ""),
        container=bundle.instance_name,
        hosts=hosts,
        versions=versions,
        checkpoints=checkpoints,
    )
    if operation is not None:
        context.command = bundles.lxc_command(
            operation.kind, operation.instance_name, operation.params,
            getattr(operation.source_host, "name", "?"),
            getattr(operation.target_host, "name", ""),
        )  # fmt: skip
        context.status = operation.get_status_display()
        context.outcome, context.error = operation.outcome, operation.error
        context.timeline = [f"{event.at:%Y-%m-%d %H:%M:%S} [{event.stage or '-'}] {event.message}"
                            for event in operation.events.all()]  # fmt: skip
    return context


def build_or_record_failure(bundle: Bundle) -> None:
    try:
        build(bundle)
    except Exception as error:
        logger.exception("bundle %s failed", bundle.pk)
        Bundle.objects.filter(pk=bundle.pk).update(
            status=Bundle.Status.FAILED,
            finished_at=timezone.now(),
            error=f"The panel could not build this bundle (a bug): "
            f"{error.__class__.__name__}: {error}",
        )


@app.task
def collect_bundle(bundle_id: int) -> None:
    bundle = (
        Bundle.objects.select_related(
            "operation__source_host", "operation__target_host", "instance__host"
        )
        .filter(pk=bundle_id, status=Bundle.Status.COLLECTING)
        .first()
    )
    if bundle is not None:  # deleted, or already built by a redelivered task
        build_or_record_failure(bundle)


@app.task
def collect_operation_bundle(operation_id: int) -> None:
    """The automatic bundle of a failed or interrupted operation (one per operation)."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None or operation.bundles.filter(automatic=True).exists():
        return
    bundle = Bundle.objects.create(
        operation=operation,
        instance=operation.instance,
        instance_name=operation.instance_name,
        automatic=True,
    )
    collect_bundle(bundle.pk)


def request_bundle(user, operation: Operation | None = None, instance=None) -> Bundle:
    """A bundle on demand; a bundle still collecting for the same thing is reused."""
    subject = {"operation": operation} if operation else {"instance": instance, "operation": None}
    existing = Bundle.objects.filter(status=Bundle.Status.COLLECTING, **subject).first()
    if existing is not None:
        return existing
    name = operation.instance_name if operation else instance.name
    bundle = Bundle.objects.create(
        instance=instance or (operation.instance if operation else None),
        instance_name=name, requested_by=user, **({"operation": operation} if operation else {})
    )  # fmt: skip
    collect_bundle.delay_on_commit(bundle.pk)
    return bundle


def probe(hosts: list[Host]) -> None:
    """Ask every agent for its facts at once; an answer refreshes agent_facts and
    agent_seen_at, silence leaves both as they were (capabilities then age them out)."""
    asked = [(host, ask_agent(host, probe_task)) for host in hosts]
    deadline = time.monotonic() + settings.AGENT_TIMEOUT_SECONDS
    for host, pending in asked:
        if pending is None:
            continue
        try:
            found = pending.get(timeout=max(0.1, deadline - time.monotonic()),
                                disable_sync_subtasks=False)  # fmt: skip
        except Exception as error:
            logger.info("agent of %s did not answer: %s", host.name, error)
            continue
        finally:
            pending.forget()
        Host.objects.filter(pk=host.pk).update(agent_facts=found, agent_seen_at=timezone.now())


@app.task
def probe_agents() -> None:
    probe(list(Host.objects.enrolled()))


@app.task
def probe_agent(host_id: int) -> None:
    """One host's agent, right after it was added or synced by hand: its answer (criu
    check, CPU flags) should not wait for beat's next round."""
    probe(list(Host.objects.enrolled().filter(pk=host_id)))


def delete_old_bundles(now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.BUNDLE_RETENTION_DAYS)
    old = list(Bundle.objects.filter(created_at__lt=cutoff))
    for bundle in old:
        if bundle.file:
            bundle.file.delete(save=False)
        bundle.delete()
    return len(old)


@app.task(name="workers.bundles.delete_old_bundles")
def delete_old_bundles_task() -> None:
    delete_old_bundles()
