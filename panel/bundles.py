"""Bug-report bundles, the pure part: redaction, caps, manifest, report.md and the tarball.

No LXD and no database here: workers/bundles.py collects the raw items and hands them over
as `Item`s; everything that decides what ends up in the tarball is in this module, so it is
testable with planted secrets alone. Redaction happens on the in-memory text of every item
before any byte is written.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

COLLECTED, MISSING = "collected", "missing"
REDACTED = "[REDACTED]"

# Config keys whose values are secrets or user data: LXD's `environment.*` (often passwords),
# cloud-init user data, the trust password.
SECRET_CONFIG_KEY = re.compile(
    r"^(?:environment\..+|cloud-init\..+|user\.(?:user|vendor)-data|user\.network-config"
    r"|core\.trust_password)$"
)
# The same keys met inside text (YAML, JSON, lxd.log lines): `key: value`, `"key": "value"`.
SECRET_KEY_IN_TEXT = re.compile(
    r"""(?P<key>["']?(?:environment\.[\w.-]+|cloud-init\.[\w.-]+|user\.(?:user|vendor)-data"""
    r"""|user\.network-config|core\.trust_password)["']?\s*[:=]\s*)(?P<value>.*)$"""
)
# liblxc writes every `environment.X` into lxc.conf as `lxc.environment = X=value`.
LXC_ENVIRONMENT = re.compile(r"^(?P<key>\s*lxc\.environment\s*=\s*[^=\s]+=)(?P<value>.+)$")
PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S
)
# A block cut by a size cap: its BEGIN without END (cap kept the head) or END without BEGIN
# (cap kept the tail). Both are still key material.
PRIVATE_KEY_HEAD = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*\Z", re.S)
PRIVATE_KEY_TAIL = re.compile(r"\A.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S)
BEARER = re.compile(r"(?i)(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/-]{8,}=*)")
SECRET_ASSIGNMENT = re.compile(
    r"""(?i)(?P<key>\b(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)["']?"""
    r"""\s*[:=]\s*["']?)(?P<value>[^\s"',;}]{4,})"""
)
# LXD trust tokens are base64 of a JSON object holding "secret"; found by decoding candidates.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


class Redactor:
    """Removes secrets from text and config dictionaries, counting what it removed by kind
    (the manifest shows the counts, never the values)."""

    # Values shorter than this are not hunted for elsewhere: "1" or "true" would match noise.
    MIN_KNOWN_LENGTH = 6

    def __init__(self, admin_patterns: Iterable[str] = ()) -> None:
        self.admin_patterns = [re.compile(pattern) for pattern in admin_patterns]
        # Secret values found under a key; an error message or another log may repeat them
        # without their key, so they are removed everywhere (see `known_values`).
        self.known: set[str] = set()

    def learn(self, value: object) -> None:
        text = str(value).strip().strip("\"'")
        if len(text) >= self.MIN_KNOWN_LENGTH and not text.startswith("[REDACTED"):
            self.known.add(text)

    def known_values(self, text: str, counts: Counter) -> str:
        for value in sorted(self.known, key=len, reverse=True):
            found = text.count(value)
            if found:
                text = text.replace(value, REDACTED)
                counts["known secret value repeated"] += found
        return text

    def config(self, config: dict, counts: Counter) -> dict:
        """A copy of an LXD config dictionary with secret values replaced."""
        clean = {}
        for key, value in config.items():
            if SECRET_CONFIG_KEY.match(str(key)) and value not in ("", None, True, False):
                if "\n" not in str(value):  # a multi-line value is user data, not one secret
                    self.learn(value)
                clean[key] = REDACTED
                counts[secret_kind(str(key))] += 1
            else:
                clean[key] = value
        return clean

    def text(self, text: str, counts: Counter) -> str:
        text = self._sub(PRIVATE_KEY_BLOCK, "[REDACTED private key]", text, "private key", counts)
        text = self._sub(PRIVATE_KEY_HEAD, "[REDACTED private key]", text, "private key", counts)
        text = self._sub(PRIVATE_KEY_TAIL, "[REDACTED private key]", text, "private key", counts)
        text = self._config_lines(text, counts)
        text = BASE64_RUN.sub(lambda match: self._token(match, counts), text)
        for pattern, kind in ((BEARER, "token"), (SECRET_ASSIGNMENT, "password or token")):
            text = self._sub_value(pattern, text, kind, counts)
        for number, pattern in enumerate(self.admin_patterns, start=1):
            text = self._sub(pattern, REDACTED, text, f"admin pattern {number}", counts)
        return self.known_values(text, counts)

    def _config_lines(self, text: str, counts: Counter) -> str:
        """Secret config keys in YAML, JSON or log lines; a YAML block value (`key: |`)
        takes every following line indented deeper than the key."""
        lines, block_indent = text.split("\n"), None
        for index, line in enumerate(lines):
            indent = len(line) - len(line.lstrip())
            if block_indent is not None:
                if line.strip() and indent <= block_indent:
                    block_indent = None
                else:
                    lines[index] = " " * indent + REDACTED if line.strip() else line
                    continue
            match = SECRET_KEY_IN_TEXT.search(line) or LXC_ENVIRONMENT.match(line)
            if match is None:
                continue
            value = match.group("value").strip()
            if value.strip(" \"',").lower() in ("", "true", "false") or REDACTED[:-1] in value:
                continue
            key = match.group("key").strip(" \"':=")
            counts[secret_kind(key)] += 1
            if value[:1] in ("|", ">"):
                block_indent = indent
                lines[index] = line[: match.start("value")] + value[:1] + " " + REDACTED
            else:
                self.learn(value.rstrip(","))
                ending = "," if value.endswith(",") else ""
                lines[index] = line[: match.start("value")] + f'"{REDACTED}"' + ending
        return "\n".join(lines)

    @staticmethod
    def _token(match: re.Match, counts: Counter) -> str:
        candidate = match.group(0)
        try:
            decoded = json.loads(base64.b64decode(candidate + "==", validate=False))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return candidate
        if isinstance(decoded, dict) and "secret" in decoded:
            counts["trust token"] += 1
            return "[REDACTED trust token]"
        return candidate

    @staticmethod
    def _sub(pattern: re.Pattern, replacement: str, text: str, kind: str, counts: Counter) -> str:
        text, found = pattern.subn(replacement, text)
        if found:
            counts[kind] += found
        return text

    def _sub_value(self, pattern: re.Pattern, text: str, kind: str, counts: Counter) -> str:
        def replace(match: re.Match) -> str:
            if match.group("value").startswith("[REDACTED"):
                return match.group(0)
            counts[kind] += 1
            self.learn(match.group("value"))
            return match.group("key") + REDACTED

        return pattern.sub(replace, text)


def secret_kind(key: str) -> str:
    if key.startswith("environment."):
        return "environment value"
    if key == "core.trust_password":
        return "trust password"
    return "cloud-init user data"


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


def human_size(size: int) -> str:
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


# --- report.md ------------------------------------------------------------------------------

LXC_COMMANDS = {
    "snapshot": "lxc snapshot {c} {snapshot}",
    "stateful_snapshot": "lxc snapshot {c} {snapshot} --stateful",
    "restore": "lxc restore {c} {snapshot}{stateful}",
    "delete_snapshot": "lxc delete {c}/{snapshot}",
    "start": "lxc start {c}",
    "start_fresh": "lxc start {c}  # after discarding the saved state",
    "stop": "lxc stop {c}",
    "restart": "lxc restart {c}",
    "stateful_stop": "lxc stop {c} --stateful",
    "migrate": "lxc move {source}:{c} {target}:",
}


def lxc_command(kind: str, container: str, params: dict, source: str, target: str) -> str:
    template = LXC_COMMANDS.get(kind)
    if template is None:
        return f"(the panel's {kind} operation on {container}; no single lxc equivalent)"
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


def render_report(context: ReportContext, entries: list[dict], redactor: Redactor) -> str:
    """report.md: ready to paste into a bug report. The error text and timeline pass the
    redactor too: they quote LXD and may quote config."""
    out = [f"# {context.title}", ""]
    out += ["## What was run", "", "```", context.command or f"(collected on demand for "
            f"{context.container})", "```", ""]  # fmt: skip
    if context.status or context.outcome or context.error:
        out += ["## The error as shown", "", f"Status: {context.status}", ""]
        if context.outcome:
            out += [context.outcome, ""]
        if context.error:
            out += ["```", context.error, "```", ""]
    out += ["## Versions", "", "| host | LXD | kernel | CRIU |", "| --- | --- | --- | --- |"]
    for host in context.hosts:
        found = context.versions.get(host, {})
        out.append(f"| {host} | {found.get('lxd', 'unknown')} | {found.get('kernel', 'unknown')}"
                   f" | {found.get('criu', 'unknown')} |")  # fmt: skip
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
