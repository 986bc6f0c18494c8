"""Bug-report bundles: collect from LXD's API and from every involved host's agent, then hand
everything to panel/bundles/pack.py and report.py to redact, cap, describe and pack.

The agents are asked first and answer while the API items are fetched, so a bundle takes as
long as the slowest side, and never longer than PANEL_AGENT_TIMEOUT_SECONDS plus the API
calls: a silent agent costs its items (each one marked missing, with why), not the bundle.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass

import yaml
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from panel import lxd
from panel.bundles import pack
from panel.bundles import report as reports
from panel.bundles.models import Bundle
from panel.failures.grouping import group_of
from panel.hosts.agents import agent_reply, ask_agent
from panel.hosts.connection import target_for
from panel.hosts.models import Host
from panel.redaction import Redactor, policy
from workers.agent import collect_task, host_items_of, instance_log_dir_item

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


def api_items(side: Side, versions: dict, redactor: Redactor) -> list[pack.Item]:
    """What the server's API gives for one host: `lxc info` (`incus info`), and the
    container's info, expanded config, log files and (when it runs) its mountinfo."""
    host, name, target = side.host.name, side.container, target_for(side.host)
    platform = side.host.platform
    api, info_file = f"{platform.name} API", f"{platform.cli}-info.yaml"
    prefix = f"{host}/{pack.member_name(name)}"
    expected = instance_api_items(platform)
    # Config values are masked while still structured (a YAML block value spans lines), and
    # the redactor learns them to remove them from every other item too.
    try:
        info = lxd.bundle_server_info(target)
    except lxd.LXDError as error:
        # LXD does not answer (stopped, killed, unreachable): every API item is missing, each
        # named, so the report says exactly what a maintainer will not find.
        why = str(error)
        return [pack.missing(f"{host}/{info_file}", host, f"{api}: GET /1.0", why)] + [
            pack.missing(f"{prefix}/{what}", host, f"{api}: {source}", why)
            for what, source in expected
        ]
    environment = info.get("environment", {})
    versions[host] = {"server": f"{platform.name} {environment.get('server_version', '?')}",
                      "kernel": environment.get("kernel_version", "?")}  # fmt: skip
    counts: Counter = Counter()
    info["config"] = redactor.config(info.get("config", {}), counts)
    items = [as_yaml(f"{host}/{info_file}", host, f"{api}: GET /1.0 ({platform.command('info')})",
                     info, counts)]  # fmt: skip
    try:
        instance = lxd.bundle_instance(target, name)
    except lxd.LXDError as error:
        instance, why = None, str(error)
    else:
        why = f"no container named {name} on {host}"
    if instance is None:
        return items + [
            pack.missing(f"{prefix}/{what}", host, f"{api}: {source}", why)
            for what, source in expected
        ]
    config_counts: Counter = Counter()
    expanded = {
        "architecture": instance.get("architecture"),
        "config": redactor.config(instance.get("expanded_config", {}), config_counts),
        "devices": redactor.devices(instance.get("expanded_devices", {}), config_counts),
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
        as_yaml(f"{prefix}/{info_file}", host, f"{api}: {platform.command('instance_info')}"
                .format(c=name), summary, None),
        as_yaml(f"{prefix}/config-expanded.yaml", host,
                f"{api}: {platform.command('config_show')}".format(c=name), expanded,
                config_counts),
    ]  # fmt: skip
    items += log_items(target, side, prefix)
    items.append(mountinfo_item(target, side, prefix, instance.get("status", "")))
    return items


REDACTION_SUMMARY = (
    "the panel's redaction policy (docs/security.md): values of config keys that name a "
    "secret, every environment.* and cloud-init/user-data value, credentials in URLs, "
    "secret-looking KEY=value pairs and lxc.environment lines, Authorization headers, "
    "private keys, trust and API tokens, and every known secret wherever it is repeated"
)


def instance_api_items(platform: lxd.Platform) -> list[tuple[str, str]]:
    """The container's items from the API: (file in the bundle, the command it matches)."""
    return [
        (f"{platform.cli}-info.yaml", platform.command("instance_info").format(c="<container>")),
        ("config-expanded.yaml", platform.command("config_show").format(c="<container>")),
        ("logs", "GET /1.0/instances/<container>/logs"),
        ("mountinfo.txt", platform.command("exec_mountinfo").format(c="<container>")),
    ]


def as_yaml(name, host, source, document, counts) -> pack.Item:
    text = yaml.safe_dump(document, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return pack.Item(name=name, host=host, source=source, content=text,
                        redactions=counts if counts is not None else Counter())  # fmt: skip


def log_items(target: lxd.Target, side: Side, prefix: str) -> list[pack.Item]:
    host, name, platform = side.host.name, side.container, side.host.platform
    source = f"{platform.name} API: GET /1.0/instances/{name}/logs"
    try:
        logs = lxd.instance_logs(target, name, settings.BUNDLE_ITEM_MAX_BYTES, keep_end=True)
    except lxd.LXDError as error:
        return [pack.missing(f"{prefix}/logs", host, source, str(error))]
    if not logs:
        return [pack.missing(f"{prefix}/logs", host, source, f"{platform.name} lists no log files")]
    return [
        pack.Item(name=f"{prefix}/logs/{pack.member_name(filename)}", host=host,
                     source=f"{source}/{filename}", content=text, truncated=truncated,
                     truncation_note=f"the panel kept the last bytes of {platform.name}'s "
                     "file (item cap)" if truncated else "")
        for filename, text, truncated in logs
    ]  # fmt: skip


def mountinfo_item(target, side: Side, prefix: str, status: str) -> pack.Item:
    host, name, platform = side.host.name, side.container, side.host.platform
    source = f"{platform.name} API: {platform.command('exec_mountinfo')}".format(c=name)
    if status != "Running":
        why = f"the container is {status.upper() or 'not running'}: it has a mountinfo only " \
              "while it runs"  # fmt: skip
        return pack.missing(f"{prefix}/mountinfo.txt", host, source, why)
    try:
        read = lxd.container_mountinfo(target, name, settings.BUNDLE_ITEM_MAX_BYTES)
    except lxd.LXDError as error:
        return pack.missing(f"{prefix}/mountinfo.txt", host, source, str(error))
    return pack.Item(name=f"{prefix}/mountinfo.txt", host=host, source=source, content=read.text,
                     truncated=read.truncated,
                     truncation_note="the panel stopped reading at the item cap and killed "
                     "the command" if read.truncated else "")  # fmt: skip


def agent_items(side: Side, reply: dict | None, why: str, checkpoints: list, versions: dict):
    host = side.host.name
    if reply is None:
        versions.setdefault(host, {})["criu"] = "unknown (no agent)"
        folder, source = instance_log_dir_item(side.host.platform)
        expected = [*host_items_of(side.host.platform), (f"{folder}/{side.container}", source)]
        return [pack.missing(f"{host}/{name}", host, source, why) for name, source in expected]
    versions.setdefault(host, {})["criu"] = reply["facts"].get("criu_version") or "?"
    for listing in reply["checkpoints"]:
        checkpoints.append({
            "host": host, "label": listing["label"], "path": listing["path"],
            "file_count": listing["file_count"], "stats": listing["stats"],
            "stats_note": listing["stats_note"],
            "tree": pack.checkpoint_tree(listing["path"], listing["files"]),
            "stats_lines": pack.stats_summary(listing["stats"]),
        })  # fmt: skip
    return [
        pack.Item(
            name=f"{host}/" + pack.member_name(*entry["name"].split("/")),
            host=host,
            source=entry["source"],
            content=entry["content"],
            reason=entry["reason"],
            truncated=entry["truncated"],
            truncation_note=entry.get("truncation") or "the agent kept the end of the file"
            if entry["truncated"]
            else "",
        )
        for entry in reply["items"]
    ]


def build(bundle: Bundle) -> None:
    started = time.monotonic()
    sides = sides_of(bundle)
    # Each agent's reply is bounded by the bundle's own total: it is read within it on the host.
    caps = (settings.BUNDLE_ITEM_MAX_BYTES, settings.BUNDLE_TOTAL_MAX_BYTES)
    pending = [ask_agent(side.host, collect_task, [side.container], *caps) for side in sides]
    deadline = time.monotonic() + settings.AGENT_TIMEOUT_SECONDS
    items: list[pack.Item] = []
    versions: dict = {}
    checkpoints: list[dict] = []
    redactor = policy()
    for side in sides:
        items += api_items(side, versions, redactor)
    for side, asked in zip(sides, pending, strict=True):
        reply, why = agent_reply(side.host, asked, deadline)
        items += agent_items(side, reply, why, checkpoints, versions)
    limits = pack.Limits(settings.BUNDLE_ITEM_MAX_BYTES, settings.BUNDLE_TOTAL_MAX_BYTES)
    entries = pack.finalise(items, redactor, limits)
    context = report_context(bundle, sides, versions, checkpoints)
    report = reports.render_report(context, entries, redactor)
    folder = f"{bundle_prefix(sides)}-bundle-{bundle.pk}"
    manifest = {
        "bundle": bundle.pk,
        "folder": folder,
        "created_at": bundle.created_at.isoformat(),
        "operation": bundle.operation_id,
        "container": bundle.instance_name,
        "hosts": [side.host.name for side in sides],
        "limits": {"item_bytes": limits.item_bytes, "total_bytes": limits.total_bytes},
        "redaction": REDACTION_SUMMARY + f"; and {len(settings.REDACT_PATTERNS)} admin pattern(s)",
        "summary": pack.summary(entries),
        "items": entries,
        "checkpoints": checkpoints,
        "collection_seconds": round(time.monotonic() - started, 3),
    }
    data = pack.build_tarball(folder, report, manifest, items, bundle.created_at.timestamp())
    if bundle.file:  # rebuilt after a worker died half-way: the same bundle, one file
        bundle.file.delete(save=False)
    bundle.file.save(f"{folder}.tar.gz", ContentFile(data), save=False)
    bundle.size, bundle.sha256 = len(data), hashlib.sha256(data).hexdigest()
    bundle.manifest, bundle.report = manifest, report
    bundle.status, bundle.finished_at = Bundle.Status.READY, timezone.now()
    bundle.save()


def servers_of(sides: list[Side]) -> str:
    """'LXD', 'Incus', or 'LXD and Incus' for a move between the two."""
    names = sorted({side.host.platform.name for side in sides}, key=["LXD", "Incus"].index)
    return " and ".join(names) or "LXD"


def bundle_prefix(sides: list[Side]) -> str:
    """The tarball's folder: lxd-bundle-N, incus-bundle-N, or lxd-incus-bundle-N."""
    return "-".join(servers_of(sides).lower().split(" and "))


def report_context(bundle, sides, versions, checkpoints) -> reports.ReportContext:
    operation = bundle.operation
    hosts = [side.host.name for side in sides]
    context = reports.ReportContext(
        title=f"{servers_of(sides)} bug report: {bundle.instance_name or 'host'}"
        + (f", operation #{operation.pk} ({operation.get_kind_display()})" if operation else ""),
        container=bundle.instance_name,
        hosts=hosts,
        versions=versions,
        checkpoints=checkpoints,
    )
    if operation is not None:
        context.command = reports.lxc_command(
            operation.kind, operation.instance_name, operation.params,
            getattr(operation.source_host, "name", "?"),
            getattr(operation.target_host, "name", ""),
            sides[0].host.platform if sides else lxd.LXD,
            operation.target_host.platform if operation.target_host else None,
        )  # fmt: skip
        context.status = operation.get_status_display()
        context.outcome, context.error = operation.outcome, operation.error
        context.timeline = [f"{event.at:%Y-%m-%d %H:%M:%S} [{event.stage or '-'}] {event.message}"
                            for event in operation.events.all()]  # fmt: skip
        group = group_of(operation)
        context.already_reported = group.upstream_url if group else ""
    return context


def build_or_record_failure(bundle: Bundle) -> None:
    try:
        build(bundle)
    except Exception as error:
        record_build_failure(bundle, error)


def record_build_failure(bundle: Bundle, error: Exception) -> None:
    """A bundle whose build raised ends failed, saying so (a bug in the panel, never the
    host's: what a host did not give is a missing item inside a ready bundle); the error's
    words pass the redaction policy, as every bundle error does."""
    logger.exception("bundle %s failed", bundle.pk)
    Bundle.objects.filter(pk=bundle.pk).update(
        status=Bundle.Status.FAILED,
        finished_at=timezone.now(),
        error=policy().text(
            f"The panel could not build this bundle (a bug): {error.__class__.__name__}: {error}"
        ),
    )
