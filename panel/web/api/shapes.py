"""The API's JSON shapes, as types: the serialisers return them (mypy checks every key and
type), and the OpenAPI schema is generated from them (panel/web/api/schema.py), so the code,
the checker and the document cannot drift apart."""

from __future__ import annotations

from typing import Any, TypedDict


class Ref(TypedDict):
    id: int | None
    name: str


class Capability(TypedDict):
    key: str
    label: str
    state: str
    allowed: bool
    reason: str


class MaintenanceFlagShape(TypedDict):
    """A host's maintenance mode (panel/maintenance/): who set it, when and why."""

    set_by: str
    set_at: str | None
    reason: str


class HostShape(TypedDict):
    id: int
    url: str
    name: str
    endpoint: str
    status: str
    enrollment: str
    fingerprint: str
    offered_fingerprint: str
    server_version: str
    last_contact: str | None
    last_sync: str | None
    last_error: str
    agent_seen_at: str | None
    facts: dict[str, Any]
    maintenance: MaintenanceFlagShape | None
    capabilities: list[Capability]


class ContainerShape(TypedDict):
    id: int
    url: str
    name: str
    host: Ref
    type: str
    status: str
    ipv4: str
    architecture: str
    description: str
    ephemeral: bool
    stateful: bool
    created_at: str | None
    last_used_at: str | None
    synced_at: str | None
    gone_at: str | None


class SnapshotShape(TypedDict):
    name: str
    taken_at: str | None
    expires_at: str | None
    stateful: bool


class ContainerDetailShape(ContainerShape):
    profiles: list[str]
    config: dict[str, Any]
    devices: dict[str, Any]
    # Config keys shown with a value removed by the redaction policy (docs/security.md).
    redacted_keys: list[str]
    state: dict[str, Any]
    snapshots: list[SnapshotShape]
    active_operation: OperationShape | None


class TransferShape(TypedDict):
    bytes: int | None
    bytes_per_second: int | None
    percent: float | None


class StepShape(TypedDict):
    stage: str
    label: str
    state: str


class OperationShape(TypedDict):
    id: int
    url: str
    kind: str
    status: str
    active: bool
    container: Ref
    target_name: str
    source_host: str | None
    target_host: str | None
    requested_by: str | None
    parent: int | None
    params: dict[str, Any]
    stage: str
    progress_text: str
    progress_fraction: float | None
    phases: list[str]
    transfer: TransferShape
    may_cancel: bool
    cancel_requested: bool
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    outcome: str
    error: str
    container_state_after: str
    downtime_seconds: float | None


class EventShape(TypedDict):
    at: str | None
    stage: str
    message: str


class FailureOfShape(TypedDict):
    """The failure group an ended operation belongs to (panel/failures/)."""

    url: str
    title: str
    status: str
    opened: str | None
    upstream_url: str | None
    note: str


class OperationDetailShape(OperationShape):
    steps: list[StepShape]
    children: list[OperationShape]
    result: dict[str, Any]
    events: list[EventShape]
    bundles: list[str]
    failure_group: FailureOfShape | None


class CancelShape(TypedDict):
    cancel: str
    operation: OperationShape


class BundleShape(TypedDict):
    id: int
    url: str
    status: str
    automatic: bool
    operation: int | None
    container: Ref
    requested_by: str | None
    created_at: str | None
    finished_at: str | None
    size: int
    sha256: str
    error: str
    download_url: str | None


class BundleDetailShape(BundleShape):
    manifest: dict[str, Any]
    report: str


class FailureGroupShape(TypedDict):
    id: int
    url: str
    title: str
    fingerprint: str
    signature: dict[str, Any]
    kind: str
    component: str
    status: str
    status_by: str | None
    status_at: str | None
    status_reason: str
    upstream_url: str | None
    upstream_by: str | None
    upstream_at: str | None
    note: str
    note_by: str | None
    note_at: str | None
    count: int
    first_seen: str | None
    last_seen: str | None
    hosts: dict[str, Any]
    platforms: list[str]


class FilingShape(TypedDict):
    tracker: str
    name: str
    url: str
    trimmed: bool


class FailureGroupDetailShape(FailureGroupShape):
    latest_bundle: str | None
    operations: list[str]
    file_upstream: list[FilingShape]


class ErrorShape(TypedDict, total=False):
    error: str
    errors: dict[str, list[str]]
    active_operation: OperationShape | None


class EndpointShape(TypedDict):
    method: str
    path: str
    summary: str


class IndexShape(TypedDict):
    name: str
    schema: str
    docs: str
    endpoints: list[EndpointShape]


class PlanItemShape(TypedDict):
    """What a maintenance plan does with one container (panel/maintenance/planning.Item)."""

    name: str
    instance: int | None
    at: str
    status: str
    home: str
    action: str
    fate: str
    target: str
    strategy: str
    strategy_reason: str
    expected_downtime: float | None
    expected_basis: str
    problems: list[str]
    warnings: list[str]
    candidates: dict[str, str]
    checks: list[dict[str, Any]]


class MaintenancePlanShape(TypedDict):
    """A host's maintenance plan: poll it until `state` is ready (or failed), read `items`,
    then confirm it; `operation` is the parent operation once confirmed."""

    id: int
    url: str
    host: Ref
    mode: str
    policy: str
    choices: dict[str, Any]
    state: str
    requested_by: str | None
    created_at: str | None
    reverses: int | None
    preflight: OperationShape | None
    summary: str
    items: list[PlanItemShape]
    confirmed_at: str | None
    operation: str | None
