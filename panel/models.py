"""Where Django finds the panel's records. Each domain keeps its own models module (one Django
app, `panel`, so tables and migrations are unchanged); this index imports them all."""

from panel.accounts.models import ApiToken, AuditEvent
from panel.bundles.models import Bundle, StoredFile, bundle_path
from panel.failures.models import FailureGroup, GroupedFailure
from panel.hosts.models import (
    ClientIdentity,
    Host,
    Instance,
    InstanceLog,
    Snapshot,
    lxd_name_validator,
)
from panel.maintenance.models import HostMaintenance, MaintenancePlan
from panel.notify.models import NotificationChoice
from panel.operations.models import Operation, OperationEvent, PanelSnapshot, SnapshotSchedule

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Bundle",
    "ClientIdentity",
    "FailureGroup",
    "GroupedFailure",
    "Host",
    "HostMaintenance",
    "Instance",
    "InstanceLog",
    "MaintenancePlan",
    "NotificationChoice",
    "Operation",
    "OperationEvent",
    "PanelSnapshot",
    "Snapshot",
    "SnapshotSchedule",
    "StoredFile",
    "bundle_path",  # named by migration 0001 (upload_to)
    "lxd_name_validator",
]
