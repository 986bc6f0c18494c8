"""What a host reported, made storable, so one odd container never blocks a host's sync.

LXD accepts what the panel's tables cannot hold on every database: a NUL character in a
description or a config value (PostgreSQL refuses it in text and JSON columns), a snapshot
name longer than the 63 characters the panel keeps. Each such value is escaped, cut or left
out, and the sync records one note per change, which the host's page shows.
"""

from __future__ import annotations

from panel.hosts.models import Instance, Snapshot
from panel.text import storable, storable_data, unstorable

MAX_NOTES = 50  # a host full of odd containers: the first ones say enough

TEXT_FIELDS = ["type", "status", "architecture", "description"]
DATA_FIELDS = ["profiles", "expanded_config", "expanded_devices", "state"]


def _limit(model: type[Instance] | type[Snapshot], field: str) -> int | None:
    return getattr(model._meta.get_field(field), "max_length", None)


def screen_inventory(reported: list[dict]) -> tuple[list[dict], list[str]]:
    """The instances as they can be stored, and a note for each thing escaped, cut or dropped."""
    kept, notes = [], []
    for data in reported:
        name = data["name"]
        if unstorable(name) or len(name) > (_limit(Instance, "name") or 0):
            notes.append(
                f"Container {storable(name)[:80]!r} is not shown: its name has characters or a "
                "length (over 63) that LXD's own rules for names do not allow."
            )
            continue
        screened, container_notes = _screen_instance(data)
        kept.append(screened)
        notes.extend(f"{name}: {note}" for note in container_notes)
    if len(notes) > MAX_NOTES:
        notes = [*notes[:MAX_NOTES], f"... and {len(notes) - MAX_NOTES} more."]
    return kept, notes


def _screen_instance(data: dict) -> tuple[dict, list[str]]:
    screened, notes = dict(data), []
    for field in TEXT_FIELDS:
        value = storable(data[field])
        if value != data[field]:
            notes.append(f"its {field} holds NUL or unencodable characters, shown escaped (\\x00).")
        limit = _limit(Instance, field)
        if limit and len(value) > limit:
            notes.append(f"its {field} is cut to {limit} characters (LXD said {len(value)}).")
            value = value[:limit]
        screened[field] = value
    for field in DATA_FIELDS:
        value = storable_data(data[field])
        if value != data[field]:
            notes.append(f"its {field} holds NUL or unencodable characters, shown escaped (\\x00).")
        screened[field] = value
    snapshots = []
    for snapshot in data["snapshots"]:
        name = snapshot["name"]
        if unstorable(name) or len(name) > (_limit(Snapshot, "name") or 0):
            notes.append(
                f"snapshot {storable(name)[:80]!r} is not shown: the panel keeps snapshot names "
                "of up to 63 characters without NUL."
            )
            continue
        snapshots.append(snapshot)
    screened["snapshots"] = snapshots
    return screened, notes
