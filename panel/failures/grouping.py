"""Putting each failed or interrupted operation into its failure group, once, when it ends.

panel/operations/lifecycle.py calls `group_failure` after the ending commits, before the
failure's bundle is asked for (so the bundle's report can say the failure is already
reported). Grouping never changes an operation; it only adds to a group, reopens a group
marked fixed that fails again, and says so (`failure_grouped`, `is_new_group`).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from panel.failures import fingerprint
from panel.failures.models import FailureGroup, GroupedFailure
from panel.hosts.models import Host
from panel.operations.models import Operation

logger = logging.getLogger(__name__)
ENDED_BADLY = (Operation.Status.FAILED, Operation.Status.INTERRUPTED)
PLATFORMS = {"lxd": "LXD", "incus": "Incus"}
# The panel's own words for failures that are not LXD's or CRIU's doing (the runner's and
# the reconciler's outcomes, panel/operations/runner.py and reconciler.py): a bug of the
# panel, a host that stopped answering, a check that refused, a worker that went away.
PANEL_OUTCOMES = (
    "The panel lost contact with",  # LXD, Incus, or both
    "The panel hit an unexpected error",
    "Pre-flight failed",
    "LXD's operation did not finish within",
)

# Sent once a failure is in its group: `failure` is the GroupedFailure; `failure.opened`
# says whether it opened the group (new, or a fixed group failing again). Notifications
# may connect here; panel/notify/send.py asks `is_new_group` and `is_quiet` instead.
failure_grouped = Signal()


def group_failure(operation_id: int) -> GroupedFailure | None:
    """Put an ended operation into its group; None if it did not fail. Idempotent: an
    operation already grouped keeps its group."""
    operation = (
        Operation.objects.select_related("source_host", "target_host")
        .filter(pk=operation_id, status__in=ENDED_BADLY)
        .first()
    )
    if operation is None:
        return None
    existing = GroupedFailure.objects.filter(operation=operation).first()
    if existing is not None:
        return existing
    signature = signature_of(operation)
    with transaction.atomic():
        group, created = FailureGroup.objects.select_for_update().get_or_create(
            fingerprint=signature.fingerprint,
            defaults={"signature": signature.as_dict(), "title": title_of(operation, signature),
                      "kind": operation.kind, "component": component_of(operation, signature)},
        )  # fmt: skip
        if GroupedFailure.objects.filter(operation=operation).exists():
            return GroupedFailure.objects.get(operation=operation)  # another worker was first
        failure = add(group, operation, created)
    logger.info("operation %s is in failure group %s", operation.pk, group.pk)
    failure_grouped.send(sender=GroupedFailure, failure=failure)
    return failure


def add(group: FailureGroup, operation: Operation, created: bool) -> GroupedFailure:
    """Count the failure in its (locked) group, and reopen a group marked fixed: the fix did
    not hold here. An ignored group just counts, quietly."""
    at = operation.finished_at or timezone.now()
    hosts = host_facts(operation)
    opened = GroupedFailure.Opened.NEW if created else GroupedFailure.Opened.NO
    if group.status == FailureGroup.Status.FIXED:
        opened = GroupedFailure.Opened.REGRESSED
        group.status = FailureGroup.Status.FILED if group.upstream_url else FailureGroup.Status.NEW
        group.status_by, group.status_by_name, group.status_at = None, "", at
        group.status_reason = (
            f"Reopened: operation #{operation.pk} failed again on "
            f"{', '.join(h['name'] for h in hosts) or 'a removed host'} after it was marked "
            "fixed upstream."
        )
    for facts in hosts:
        seen = group.hosts.get(facts["name"], {"count": 0})
        group.hosts[facts["name"]] = {
            **{key: value for key, value in facts.items() if key != "name"},
            "count": seen["count"] + 1,
            "last_seen": at.isoformat(),
        }
    if created:
        group.first_seen = group.last_seen = at
    group.count += 1
    group.first_seen, group.last_seen = min(group.first_seen, at), max(group.last_seen, at)
    group.save()
    return GroupedFailure.objects.create(
        operation=operation, group=group, at=at, opened=opened, hosts=hosts
    )


def hosts_of(operation: Operation) -> list[Host]:
    found = [operation.source_host, operation.target_host]
    return [host for index, host in enumerate(found) if host and host not in found[:index]]


def platform_of(host: Host) -> str:
    server = host.facts.get("server", "")
    version = host.facts.get("server_version") or host.server_version or "?"
    return f"{PLATFORMS.get(server, server or 'unknown')} {version}"


def host_facts(operation: Operation) -> list[dict]:
    return [
        {
            "name": host.name,
            "platform": platform_of(host),
            "os": host.facts.get("os", ""),
            "kernel": host.facts.get("kernel_version", ""),
            "criu": fingerprint.criu_version(host.agent_facts.get("criu_version") or ""),
        }
        for host in hosts_of(operation)
    ]


def failing_host(operation: Operation) -> Host | None:
    """The host whose CRIU wrote the error: the one the panel read the log on, else for a
    migration the target when it was the restore that failed, else the source."""
    platform_text, _, named = fingerprint.split_error(operation.error)
    for host in hosts_of(operation):
        if host.name == named:
            return host
    if operation.target_host is not None and "restore" in platform_text.lower():
        return operation.target_host
    return operation.source_host


def signature_of(operation: Operation) -> fingerprint.Signature:
    names = [operation.instance_name, operation.target_name]
    names += [host.name for host in hosts_of(operation)]
    names += [value for value in operation.params.values() if isinstance(value, str)]
    versions = " -> ".join(platform_of(host).lower() for host in hosts_of(operation))
    failing = failing_host(operation)
    return fingerprint.signature(
        kind=operation.kind,
        stages=operation.events.values_list("stage", flat=True),
        # The signature, title and fingerprint are shown to every viewer and filed upstream:
        # built from the texts as the policy lets them out (rows from before the policy too).
        error=operation.redacted(operation.error),
        outcome=operation.redacted(operation.outcome),
        versions=versions or "unknown",
        names=names,
        fallback_criu_version=failing.agent_facts.get("criu_version", "") if failing else "",
    )


def component_of(operation: Operation, signature: fingerprint.Signature) -> str:
    """Whose bug it looks like: CRIU's when CRIU reported an error; the panel's (or its
    surroundings') for its own failure kinds; otherwise the failing host's platform."""
    if signature.criu:
        return FailureGroup.Component.CRIU
    if operation.status == Operation.Status.INTERRUPTED or operation.outcome.startswith(
        PANEL_OUTCOMES
    ):
        return FailureGroup.Component.PANEL
    host = failing_host(operation)
    if host is not None and host.facts.get("server") == "incus":
        return FailureGroup.Component.INCUS
    return FailureGroup.Component.LXD


def title_of(operation: Operation, signature: fingerprint.Signature) -> str:
    """ "Stateful snapshot failed while checkpointing: vdso: Unexpected rt vDSO area bounds"."""
    cause = signature.criu.split("): ", 1)[-1] if signature.criu else signature.platform
    verb = "was interrupted" if operation.status == Operation.Status.INTERRUPTED else "failed"
    return f"{operation.get_kind_display()} {verb} while {signature.phase}: {cause}"[:300]


def group_of(operation: Operation) -> FailureGroup | None:
    """The operation's group, grouping it now if that had not happened (the bundle asks, in
    case the grouping after its ending was lost with its process)."""
    failure = GroupedFailure.objects.select_related("group").filter(operation=operation).first()
    if failure is None and operation.status in ENDED_BADLY:
        failure = group_failure(operation.pk)
    return failure.group if failure else None


def is_quiet(operation: Operation) -> bool:
    """A failure of a group the team marked ignored: nobody is told of it."""
    return GroupedFailure.objects.filter(
        operation=operation, group__status=FailureGroup.Status.IGNORED
    ).exists()


def is_new_group(operation: Operation) -> bool:
    """Did this failure open its group: the first of its cause, or a group marked fixed
    failing again? (For notifications set to "new groups only".) False until grouped."""
    return GroupedFailure.objects.filter(operation=operation).exclude(opened="").exists()
