"""The JSON API's serialisers: plain functions, one per object, saying what its page shows."""

from __future__ import annotations

from django.http import HttpRequest

from panel.accounts.roles import can_operate
from panel.failures.filing import filings
from panel.lxd import Transfer
from panel.maintenance.mode import flag_of
from panel.models import Bundle, FailureGroup, GroupedFailure, Host, Instance, Operation
from panel.operations.phases import phases_of, steps
from panel.redaction import policy, shown_config
from panel.web.api.base import stamp, url
from panel.web.api.shapes import (
    BundleShape,
    ContainerDetailShape,
    ContainerShape,
    FailureGroupDetailShape,
    FailureGroupShape,
    FailureOfShape,
    FilingShape,
    HostShape,
    MaintenanceFlagShape,
    OperationDetailShape,
    OperationShape,
    StepShape,
    TransferShape,
)

# The facts a client may need to pick a host; the rest (api_extensions, cpu_flags) is long.
HOST_FACTS = (
    "server",
    "server_version",
    "kernel_version",
    "os",
    "architectures",
    "driver",
    "driver_version",
    "storage",
    "system_type",
    "cpu_model",
    "cpu_vendor",
    "cpu_threads",
    "memory_total",
    "storage_pools",
    "storage_pool_drivers",
    "profiles",
    "networks",
)


def host_json(request: HttpRequest, host: Host) -> HostShape:
    """What the host page shows; of the certificates only the pinned fingerprint."""
    return {
        "id": host.pk,
        "url": url(request, "api-host-detail", host.pk),
        "name": host.name,
        "endpoint": host.endpoint,
        "status": host.status,
        "enrollment": host.enrollment,
        "fingerprint": host.fingerprint,
        # What to compare before confirming; only while the host waits for that.
        "offered_fingerprint": host.offered_fingerprint
        if host.enrollment == Host.Enrollment.AWAITING_CONFIRMATION
        else "",
        "server_version": host.server_version,
        "last_contact": stamp(host.last_contact),
        "last_sync": stamp(host.last_sync),
        "last_error": host.last_error,
        "agent_seen_at": stamp(host.agent_seen_at),
        "facts": {key: host.facts[key] for key in HOST_FACTS if key in host.facts},
        "maintenance": maintenance_json(host),
        "capabilities": [
            {
                "key": c.key,
                "label": c.label,
                "state": c.state,
                "allowed": c.allowed,
                "reason": c.reason,
            }
            for c in host.capabilities
        ],
    }


def maintenance_json(host: Host) -> MaintenanceFlagShape | None:
    """The host's maintenance mode: who set it, when and why; null when it is not set."""
    flag = flag_of(host)
    if flag is None:
        return None
    return {"set_by": flag.set_by_name, "set_at": stamp(flag.set_at), "reason": flag.reason}


def container_json(request: HttpRequest, instance: Instance) -> ContainerShape:
    return {
        "id": instance.pk,
        "url": url(request, "api-container-detail", instance.pk),
        "name": instance.name,
        "host": {"id": instance.host_id, "name": instance.host.name},
        "type": instance.type,
        "status": instance.status,
        "ipv4": instance.ipv4,
        "architecture": instance.architecture,
        "description": policy().text(instance.description) if instance.description else "",
        "ephemeral": instance.ephemeral,
        "stateful": instance.stateful,
        "created_at": stamp(instance.created_at),
        "last_used_at": stamp(instance.last_used_at),
        "synced_at": stamp(instance.synced_at),
        "gone_at": stamp(instance.gone_at),
    }


def container_detail_json(request: HttpRequest, instance: Instance) -> ContainerDetailShape:
    """`lxc info` and `lxc config show --expanded`, as the container page shows them: with
    secrets redacted (panel/redaction.py), for every caller."""
    active = instance.operations.active().first()
    shown = shown_config(instance.expanded_config, instance.expanded_devices)
    return {
        **container_json(request, instance),
        "profiles": instance.profiles,
        "config": shown.config,
        "devices": shown.devices,
        "redacted_keys": shown.redacted_keys,
        "state": instance.state,
        "snapshots": [
            {
                "name": s.name,
                "taken_at": stamp(s.created_at),
                "expires_at": stamp(s.expires_at),
                "stateful": s.stateful,
            }
            for s in instance.snapshots.all()
        ],
        "active_operation": operation_json(request, active) if active else None,
    }


def operation_json(request: HttpRequest, operation: Operation) -> OperationShape:
    """Everything the progress page shows; poll it until `active` is false."""
    duration = operation.duration
    return {
        "id": operation.pk,
        "url": url(request, "api-operation-detail", operation.pk),
        "kind": operation.kind,
        "status": operation.status,
        "active": operation.is_active,
        "container": {"id": operation.instance_id, "name": operation.instance_name},
        "target_name": operation.target_name,
        "source_host": getattr(operation.source_host, "name", None),
        "target_host": getattr(operation.target_host, "name", None),
        "requested_by": getattr(operation.requested_by, "username", None),
        "parent": operation.parent_id,
        "params": operation.params,
        "stage": operation.stage,
        "progress_text": operation.progress_text,
        "progress_fraction": operation.progress_fraction,
        "phases": phases_of(operation),
        "transfer": transfer_json(Transfer.parse(operation.progress_text)),
        "may_cancel": operation.may_cancel,
        "cancel_requested": operation.cancel_requested,
        "queued_at": stamp(operation.queued_at),
        "started_at": stamp(operation.started_at),
        "finished_at": stamp(operation.finished_at),
        "duration_seconds": round(duration.total_seconds(), 3) if duration else None,
        "outcome": operation.outcome,
        "error": operation.error,
        "container_state_after": operation.container_state_after,
        "downtime_seconds": operation.downtime_seconds,
    }


def transfer_json(transfer: Transfer) -> TransferShape:
    return {
        "bytes": transfer.bytes,
        "bytes_per_second": transfer.bytes_per_second,
        "percent": transfer.percent,
    }


def operation_detail_json(request: HttpRequest, operation: Operation) -> OperationDetailShape:
    seen = frozenset(operation.events.values_list("stage", flat=True).distinct())
    children = operation.children.select_related("source_host", "target_host", "requested_by")
    return {
        **operation_json(request, operation),
        "steps": [
            StepShape(stage=step.stage, label=step.label, state=step.state)
            for step in steps(operation, seen)
        ],
        "children": [operation_json(request, child) for child in children.order_by("pk")],
        "result": operation.result,
        "events": [
            {"at": stamp(e.at), "stage": e.stage, "message": e.message}
            for e in operation.events.all()
        ],
        "bundles": [
            url(request, "api-bundle-detail", pk)
            for pk in operation.bundles.values_list("pk", flat=True)
        ],
        "failure_group": failure_of_json(request, operation),
    }


def failure_of_json(request: HttpRequest, operation: Operation) -> FailureOfShape | None:
    """The failure's group, and what the operation page says of it."""
    failure = GroupedFailure.objects.select_related("group").filter(operation=operation).first()
    if failure is None:
        return None
    group = failure.group
    return {"url": url(request, "api-failure-detail", group.pk), "title": group.title,
            "status": group.status, "opened": failure.opened or None,
            "upstream_url": group.upstream_url or None, "note": group.note}  # fmt: skip


def bundle_json(request: HttpRequest, bundle: Bundle) -> BundleShape:
    ready = bundle.status == Bundle.Status.READY and bool(bundle.file)
    return {
        "id": bundle.pk,
        "url": url(request, "api-bundle-detail", bundle.pk),
        "status": bundle.status,
        "automatic": bundle.automatic,
        "operation": bundle.operation_id,
        "container": {"id": bundle.instance_id, "name": bundle.instance_name},
        "requested_by": getattr(bundle.requested_by, "username", None),
        "created_at": stamp(bundle.created_at),
        "finished_at": stamp(bundle.finished_at),
        "size": bundle.size,
        "sha256": bundle.sha256,
        "error": bundle.error,
        "download_url": url(request, "api-bundle-download", bundle.pk) if ready else None,
    }


def failure_group_json(request: HttpRequest, group: FailureGroup) -> FailureGroupShape:
    """What the failures list shows of a group, and who set what, when."""
    return {
        "id": group.pk,
        "url": url(request, "api-failure-detail", group.pk),
        "title": group.title,
        "fingerprint": group.fingerprint,
        "signature": group.signature,
        "kind": group.kind,
        "component": group.component,
        "status": group.status,
        "status_by": group.status_by_name or None,
        "status_at": stamp(group.status_at),
        "status_reason": group.status_reason,
        "upstream_url": group.upstream_url or None,
        "upstream_by": group.upstream_by_name or None,
        "upstream_at": stamp(group.upstream_at),
        "note": group.note,
        "note_by": group.note_by_name or None,
        "note_at": stamp(group.note_at),
        "count": group.count,
        "first_seen": stamp(group.first_seen),
        "last_seen": stamp(group.last_seen),
        "hosts": group.hosts,
        "platforms": group.platforms,
    }


def failure_group_detail_json(request: HttpRequest, group: FailureGroup) -> FailureGroupDetailShape:
    """The group's page: its newest operations and bundle, and (for operators, who file)
    the pre-filled new-issue link of each tracker that fits."""
    latest = group.latest_bundle()
    operations = group.operations().values_list("pk", flat=True)[:100]
    return {
        **failure_group_json(request, group),
        "latest_bundle": url(request, "api-bundle-detail", latest.pk) if latest else None,
        "operations": [url(request, "api-operation-detail", pk) for pk in operations],
        "file_upstream": [
            FilingShape(tracker=f.tracker.key, name=f.tracker.name, url=f.url, trimmed=f.trimmed)
            for f in (filings(group) if can_operate(request.user) else [])
        ],
    }
