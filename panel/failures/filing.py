"""Filing a failure group upstream once: the right tracker for the failing component and
platform, and its new-issue page pre-filled with a title and the redacted report, trimmed
so the whole link stays under MAX_URL_BYTES (the rest is in the bundle to attach); title and
body pass the redaction policy (docs/security.md) as the link is built.
No network: these are links the user opens; the panel never posts anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from panel.bundles.report import lxc_command
from panel.failures.models import FailureGroup
from panel.operations.models import Operation
from panel.redaction import policy

# Browsers and GitHub take links of this size; Launchpad too. Beyond it some cut the URL.
MAX_URL_BYTES = 8000


@dataclass(frozen=True)
class Tracker:
    """A bug tracker's new-issue page and the names of its title and body fields."""

    key: str
    name: str
    new_issue: str
    title_field: str = "title"
    body_field: str = "body"


TRACKERS = {
    tracker.key: tracker
    for tracker in (
        Tracker("lxd", "LXD (canonical/lxd on GitHub)", "https://github.com/canonical/lxd/issues/new"),
        Tracker("incus", "Incus (lxc/incus on GitHub)", "https://github.com/lxc/incus/issues/new"),
        Tracker("criu", "CRIU (checkpoint-restore/criu on GitHub)",
                "https://github.com/checkpoint-restore/criu/issues/new"),
        # The checkpoint/restore announcement asks CRIU bugs on Ubuntu to go to its package.
        Tracker("ubuntu-criu", "Ubuntu's criu package (Launchpad)",
                "https://bugs.launchpad.net/ubuntu/+source/criu/+filebug",
                title_field="field.title", body_field="field.comment"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Filing:
    """One tracker's pre-filled new-issue link, and how much of the report it carries."""

    tracker: Tracker
    url: str
    title: str
    body: str
    trimmed: bool


def trackers_for(group: FailureGroup) -> list[Tracker]:
    """Where this group's bug belongs, the likeliest first. CRIU's errors go to CRIU (to
    Ubuntu's package first on Ubuntu hosts); everything else to the failing platform's."""
    platforms = [TRACKERS["incus"] if "Incus" in p else TRACKERS["lxd"] for p in group.platforms]
    platforms = list(dict.fromkeys(platforms)) or [TRACKERS["lxd"]]
    if group.component != FailureGroup.Component.CRIU:
        return platforms
    on_ubuntu = any("ubuntu" in facts.get("os", "").lower() for facts in group.hosts.values())
    criu = [TRACKERS["ubuntu-criu"], TRACKERS["criu"]] if on_ubuntu else [TRACKERS["criu"]]
    return [*criu, *platforms]


def issue_title(group: FailureGroup) -> str:
    versions = ", ".join(group.platforms)
    criu = group.signature.get("criu_version")
    if criu:
        versions += f", CRIU {criu}"
    return f"{group.title} ({versions})"[:250]


def issue_body(group: FailureGroup, operation: Operation | None, report: str) -> str:
    """What the team saw, then the failure's report.md (or, before its bundle is ready,
    the command, the error and the versions)."""
    lines = [
        f"Seen {group.count} time(s) on {len(group.hosts)} host(s) "
        f"({', '.join(group.platforms)}), {group.first_seen:%Y-%m-%d} to "
        f"{group.last_seen:%Y-%m-%d}, by a panel that groups checkpoint/restore failures.",
        "",
    ]
    if report:
        lines.append(report)
    elif operation is not None:
        command = lxc_command(
            operation.kind, operation.instance_name, operation.params,
            getattr(operation.source_host, "name", "?"), getattr(operation.target_host, "name", ""),
        )  # fmt: skip
        lines += ["## What was run", "", "```", command, "```", "", "## The error as shown", "",
                  operation.outcome, "", "```", operation.error, "```"]  # fmt: skip
    return "\n".join(lines)


def new_issue_link(tracker: Tracker, title: str, body: str, attach: str) -> Filing:
    """The pre-filled link; a body too long for it keeps its first lines and says where
    the rest is (`attach`: the bundle to attach to the new issue)."""

    def link(text: str) -> str:
        return (f"{tracker.new_issue}?{tracker.title_field}={quote(title, safe='')}"
                f"&{tracker.body_field}={quote(text, safe='')}")  # fmt: skip

    if len(link(body)) <= MAX_URL_BYTES:
        return Filing(tracker, link(body), title, body, trimmed=False)
    note = f"\n\n[Trimmed to fit a link: the whole report is report.md in {attach}.]"

    def fits(text: str) -> bool:
        return len(link(text + note)) <= MAX_URL_BYTES

    lines = body.split("\n")
    kept = "\n".join(lines[: most(len(lines), lambda n: fits("\n".join(lines[:n])))])
    if not kept.strip():  # the first line alone is too long: cut inside it
        kept = body[: most(len(body), lambda n: fits(body[:n]))]
    return Filing(tracker, link(kept + note), title, kept + note, trimmed=True)


def most(count: int, fits: Callable[[int], bool]) -> int:
    """The largest n <= count for which fits(n), by bisection (fits(0) is assumed)."""
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def filings(group: FailureGroup) -> list[Filing]:
    """A pre-filled link per tracker of this group, from its latest bundle's report."""
    bundle = group.latest_bundle(ready=True)
    operation = group.operations().select_related("source_host", "target_host").first()
    # Redacted once more as it leaves, by the policy everything else leaving the panel uses
    # (panel/redaction.py), knowing the container's secret values: the admin's patterns may
    # have changed since the bundle was made, and a note or title may quote a value.
    instance = operation.instance if operation is not None and operation.instance_id else None
    redactor = policy(instance.expanded_config if instance else None)
    body = redactor.text(issue_body(group, operation, bundle.report if bundle else ""))
    title = redactor.text(issue_title(group))
    attach = (
        f"the panel's bug bundle lxd-bundle-{bundle.pk}.tar.gz (please attach it)"
        if bundle
        else "the panel's bug bundle of this failure (please attach it)"
    )
    return [new_issue_link(tracker, title, body, attach) for tracker in trackers_for(group)]
