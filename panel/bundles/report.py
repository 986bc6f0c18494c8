"""report.md: the ready-to-paste text at the top of every bundle, and the `lxc` (or `incus`)
command that matches each operation kind (the platform table's `commands`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from panel.bundles.pack import MISSING, summary
from panel.lxd.platforms import LXD, Platform
from panel.redaction import Redactor


def lxc_command(
    kind: str,
    container: str,
    params: dict,
    source: str,
    target: str,
    platform: Platform = LXD,
    target_platform: Platform | None = None,
) -> str:
    """The command a maintainer would run to do what the operation did, in the client of
    the host's platform. A move between LXD and Incus has none: neither client moves a
    container to the other's server (docs/platforms.md)."""
    if kind == "migrate" and target_platform is not None and target_platform is not platform:
        return (
            f"(the panel's move of {container} from {platform.name} {source} to "
            f"{target_platform.name} {target}: no single command does it; "
            f"`{platform.cli} export`, then `{target_platform.cli} import` with the config "
            "translated, is the nearest)"
        )
    template = platform.commands.get(kind)
    if template is None:
        return f"(the panel's {kind} operation on {container}; no single {platform.cli} equivalent)"
    return template.format(
        c=container,
        snapshot=params.get("snapshot", "?"),
        stateful=" --stateful" if params.get("stateful") else "",
        source=source,
        target=target or "?",
    )


@dataclass
class ReportContext:
    """Everything report.md says, already in plain values (the worker fills it)."""

    title: str
    container: str
    hosts: list[str]
    command: str = ""
    outcome: str = ""
    error: str = ""
    status: str = ""
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    already_reported: str = ""  # the upstream bug of this failure's group, once filed


def render_report(context: ReportContext, entries: list[dict], redactor: Redactor) -> str:
    """report.md: ready to paste into a bug report. The error text and timeline pass the
    redactor too: they quote LXD and may quote config."""
    out = [f"# {context.title}", ""]
    if context.already_reported:
        out += [f"Already reported: {context.already_reported}", ""]
    out += ["## What was run", "", "```", context.command or f"(collected on demand for "
            f"{context.container})", "```", ""]  # fmt: skip
    if context.status or context.outcome or context.error:
        out += ["## The error as shown", "", f"Status: {context.status}", ""]
        if context.outcome:
            out += [context.outcome, ""]
        if context.error:
            out += ["```", context.error, "```", ""]
    out += ["## Versions", "", "| host | server | kernel | CRIU |", "| --- | --- | --- | --- |"]
    for host in context.hosts:
        found = context.versions.get(host, {})
        cells = [found.get(key, "unknown") for key in ("server", "kernel", "criu")]
        out.append(f"| {host} | {' | '.join(cells)} |")
    out.append("")
    if context.timeline:
        out += ["## Timeline", "", "```", *context.timeline, "```", ""]
    for checkpoint in context.checkpoints:
        out += [f"## Checkpoint images on {checkpoint['host']}", "", "```", checkpoint["tree"],
                "```", ""]  # fmt: skip
        out += [f"- {line}" for line in checkpoint.get("stats_lines", [])]
        if checkpoint.get("stats_note"):
            out.append(f"- {checkpoint['stats_note']}")
        out.append("")
    counts = summary(entries)
    out += [
        "## What this bundle holds",
        "",
        f"{counts['collected']} of {counts['items']} items collected, {counts['missing']} "
        f"missing, {counts['truncated']} truncated, {counts['redacted']} with secrets redacted "
        "(see manifest.json).",
        "",
    ]
    gaps = [entry for entry in entries if entry["status"] == MISSING or entry["truncated"]]
    if gaps:
        out += ["| item | host | why |", "| --- | --- | --- |"]
        for entry in gaps:
            why = entry["reason"] or entry["truncation"]
            out.append(f"| {entry['name']} | {entry['host']} | {why.replace('|', '/')} |")
        out.append("")
    return redactor.text("\n".join(out), Counter())
