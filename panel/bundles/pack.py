"""Bug-report bundles, the pure part: items, caps, manifest and the tarball.

No LXD and no database here: panel/bundles/collect.py gathers the raw items and hands them
over as `Item`s; everything that decides what ends up in the tarball is here and in
panel/redaction.py, so it is testable with planted secrets alone. Redaction happens on the
in-memory text of every item before any byte is written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field

from panel.redaction import Redactor

COLLECTED, MISSING = "collected", "missing"


@dataclass
class Item:
    """One entry of the bundle: a file in the tarball, or a gap the manifest explains."""

    name: str
    host: str
    source: str
    content: bytes | str | None = None
    reason: str = ""
    truncated: bool = False
    truncation_note: str = ""
    redactions: Counter = field(default_factory=Counter)

    @property
    def status(self) -> str:
        return MISSING if self.content is None else COLLECTED


def missing(name: str, host: str, source: str, reason: str) -> Item:
    return Item(name=name, host=host, source=source, reason=reason)


def member_name(*parts: str) -> str:
    """A safe path inside the tarball from untrusted parts (LXD log file names): no
    separators, no `..`, nothing but a conservative character set."""
    safe = []
    for part in parts:
        cleaned = re.sub(r"[^A-Za-z0-9._:@+-]", "_", part).strip(".") or "_"
        safe.append(cleaned)
    return "/".join(safe)


def cap_tail(data: bytes, limit: int) -> tuple[bytes, bool]:
    """Logs end with what went wrong (CRIU's errors come last): keep the end."""
    return (data[-limit:], True) if len(data) > limit else (data, False)


@dataclass(frozen=True)
class Limits:
    item_bytes: int
    total_bytes: int


def finalise(items: list[Item], redactor: Redactor, limits: Limits) -> list[dict]:
    """Redact, then cap, every item in place; return the manifest entries. Redaction runs on
    the whole text first so a cap can never cut a secret in two and leave half of it."""
    texts = [
        None if item.content is None else redactor.text(as_text(item.content), item.redactions)
        for item in items
    ]
    total, entries = 0, []
    for item, text in zip(items, texts, strict=True):
        if text is not None:
            # A second look: a secret learnt from a later item may sit in an earlier one.
            data = redactor.known_values(text, item.redactions).encode()
            data, cut = cap_tail(data, limits.item_bytes)
            if cut:
                item.truncated = True
                item.truncation_note = f"kept the last {limits.item_bytes} bytes (item cap)"
            room = limits.total_bytes - total
            if len(data) > room:
                item.truncated = True
                item.truncation_note = "dropped: the bundle's total size cap was reached"
                item.reason = item.reason or "the bundle's total size cap was reached"
                data = data[-room:] if room > 0 else b""
            item.content = data
            total += len(data)
        entries.append(manifest_entry(item))
    return entries


def as_text(content: bytes | str) -> str:
    return content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content


def manifest_entry(item: Item) -> dict:
    data = item.content if isinstance(item.content, bytes) else b""
    return {
        "name": item.name,
        "host": item.host,
        "source": item.source,
        "status": item.status,
        "reason": item.reason,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest() if item.content is not None else "",
        "truncated": item.truncated,
        "truncation": item.truncation_note,
        "redacted": dict(sorted(item.redactions.items())),
    }


def summary(entries: list[dict]) -> dict:
    return {
        "items": len(entries),
        "collected": sum(entry["status"] == COLLECTED for entry in entries),
        "missing": sum(entry["status"] == MISSING for entry in entries),
        "truncated": sum(bool(entry["truncated"]) for entry in entries),
        "redacted": sum(bool(entry["redacted"]) for entry in entries),
    }


def build_tarball(folder: str, report: str, manifest: dict, items: list[Item], mtime: float):
    """The .tar.gz bytes: report.md and manifest.json first, then every collected item."""
    buffer = io.BytesIO()
    # A fixed mtime in the gzip header too, so the same content gives the same bytes.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=int(mtime)) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as tar,
    ):
        add_member(tar, f"{folder}/report.md", report.encode(), mtime)
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
        add_member(tar, f"{folder}/manifest.json", manifest_bytes, mtime)
        for item in items:
            if isinstance(item.content, bytes):
                add_member(tar, f"{folder}/{item.name}", item.content, mtime)
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


# --- Checkpoint listings and CRIU statistics (from the agent) -------------------------------


def checkpoint_tree(path: str, files: list[dict]) -> str:
    """The listing as `tree` prints it in the announcement, with sizes."""
    lines = [path]
    for position, entry in enumerate(files):
        branch = "└── " if position == len(files) - 1 else "├── "
        lines.append(f"{branch}{entry['name']} ({human_size(entry['size'])})")
    total = sum(entry["size"] for entry in files)
    lines.append(f"\n0 directories, {len(files)} files, {human_size(total)} in all")
    return "\n".join(lines)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def stats_summary(stats: dict) -> list[str]:
    """Where the time went, from crit's decoding of stats-dump / stats-restore (times are
    microseconds in CRIU's stats)."""
    lines = []
    dump = stats.get("dump")
    if dump:
        lines.append(
            f"dump: frozen {dump.get('frozen_time', 0) / 1000:.1f} ms "
            f"(freezing {dump.get('freezing_time', 0) / 1000:.1f} ms, memory dump "
            f"{dump.get('memdump_time', 0) / 1000:.1f} ms, memory write "
            f"{dump.get('memwrite_time', 0) / 1000:.1f} ms); pages written "
            f"{dump.get('pages_written', 0)} of {dump.get('pages_scanned', 0)} scanned"
        )
    restore = stats.get("restore")
    if restore:
        lines.append(
            f"restore: forking {restore.get('forking_time', 0) / 1000:.1f} ms, restore "
            f"{restore.get('restore_time', 0) / 1000:.1f} ms; pages restored "
            f"{restore.get('pages_restored', 0)}"
        )
    return lines
