"""What identifies a failure's cause, not its instance: the fingerprint that groups failed
operations (docs/failures.md). Pure: plain strings in, plain strings out; no database.

A fingerprint is the SHA-256 of six parts, each normalised so that two hosts failing for the
same reason give the same text:

    kind           the operation's kind (stateful_snapshot, restore, migrate, ...)
    phase          the stage it failed in (checkpointing, restoring, transferring, ...)
    criu           CRIU's first `Error (file:line): ...` line, or "" when CRIU said nothing
    platform       LXD's / Incus's error text (the panel's own words when LXD gave none)
    versions       the platform and version of each host ("lxd 5.0.2", "lxd 5.0.2 -> incus 6.0.4")
    criu_version   the CRIU that wrote that line ("3.17.1"), "" when CRIU said nothing
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

# Stages that say what the panel did around the work, not where the work failed.
HOUSEKEEPING_STAGES = frozenset(
    {"", "queued", "waiting for host", "starting", "diagnosing", "reconciling", "done",
     "failed", "interrupted", "cancelled"}
)  # fmt: skip
PART_OF = {"checkpointing": "transferring"}
CRIU_SECTION = re.compile(r"^From CRIU's log(?: on (?P<host>\S+?))?:$", re.M)
CRIU_ERROR = re.compile(r"Error \((?P<file>[^():\s]+):\d+\): (?P<message>.*)")
CRIU_VERSION = re.compile(r"\bVersion: (?P<version>\d+(?:\.\d+)+)")
MAX_PART = 300  # characters of each normalised text kept in the fingerprint

# Normalisations, in order: each replaces what differs between instances of one cause.
# Whole tokens first (times, UUIDs, URLs, addresses, paths: they hold names and numbers),
# then the operation's own names (`normalise`), then what is left of hex and numbers.
LINE_TIMESTAMP = re.compile(r"^\s*\(\d+\.\d+\)\s*", re.M)  # CRIU: "(00.004617) "
TOKENS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>)]*[^\s'\"<>).,;:]", re.I), "<url>"),
    (re.compile(r"\[?\b(?:\d{1,3}\.){3}\d{1,3}\b\]?(?::\d+)?"), "<address>"),
    (re.compile(r"\[[0-9a-f:]*:[0-9a-f:]+\](?::\d+)?", re.I), "<address>"),
    (re.compile(r"(?<![\w<])(?:/[^\s/:'\"()\[\],;<>]+)+/?"), "<path>"),
]
NUMBERS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![\w.<])-?\d+(?:\.\d+)*(?![\w>])"), "<n>"),
]
WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Signature:
    """The six parts a fingerprint is made of, each already normalised."""

    kind: str
    phase: str
    criu: str
    platform: str
    versions: str
    criu_version: str

    @property
    def fingerprint(self) -> str:
        joined = "\n".join(f"{key}={value}" for key, value in asdict(self).items())
        return hashlib.sha256(joined.encode()).hexdigest()

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def normalise(text: str, names: Iterable[str] = ()) -> str:
    """The text with what identifies the instance replaced: times, UUIDs, URLs, addresses,
    paths, the operation's own names (container, snapshot, hosts), hex and numbers; CRIU's
    line timestamps dropped, whitespace collapsed, cut to MAX_PART characters."""
    text = LINE_TIMESTAMP.sub("", text.replace("\x00", ""))
    for pattern, replacement in TOKENS:
        text = pattern.sub(replacement, text)
    for name in sorted({n for n in names if len(n) >= 2}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w<-]){re.escape(name)}(?![\w>-])", "<name>", text)
    for pattern, replacement in NUMBERS:
        text = pattern.sub(replacement, text)
    return WHITESPACE.sub(" ", text).strip()[:MAX_PART]


def split_error(error: str) -> tuple[str, str, str]:
    """(LXD's own text, the CRIU lines the panel added, the host CRIU failed on or "").

    The panel appends CRIU's error lines to LXD's terse message under a line "From CRIU's
    log:" (panel/operations/container.py) or "From CRIU's log on HOST:" (a migration's
    target, panel/operations/recovery.py)."""
    found = CRIU_SECTION.search(error)
    if found is None:
        return error.strip(), "", ""
    return error[: found.start()].strip(), error[found.end() :].strip(), found["host"] or ""


def first_criu_error(text: str) -> str:
    """CRIU's first `Error (file:line): message`, as `Error (file): message`: the line
    number moves between CRIU releases while the cause stays (the version is its own part)."""
    for line in text.splitlines():
        found = CRIU_ERROR.search(line)
        if found:
            return f"Error ({found['file']}): {found['message'].strip()}"
    return ""


def criu_version(text: str) -> str:
    """The version CRIU printed at the top of its log ("Version: 3.17.1 (gitid 0)")."""
    found = CRIU_VERSION.search(text)
    return found["version"] if found else ""


def phase_of(stages: Iterable[str]) -> str:
    """The last stage the work entered, skipping the panel's own bookkeeping around it.

    A live transfer's freeze is noted on the timeline as "checkpointing" while the stage is
    still the transfer (panel/operations/downtime.py), and only when a sample caught it: it
    is part of the transfer, so one cause does not get two phases."""
    phase, started = "", False
    for stage in stages:
        started = started or stage == "starting"
        if stage in HOUSEKEEPING_STAGES or PART_OF.get(stage) == phase:
            continue
        phase = stage
    return phase or ("starting" if started else "queued")


def first_sentence(text: str) -> str:
    """The panel's own words, up to the end of their first sentence (the rest says where
    the container is now, which differs between failures of one cause)."""
    found = re.search(r"[.;!?](?:\s|$)", text)
    return text[: found.start() + 1] if found else text


def signature(
    kind: str,
    stages: Iterable[str],
    error: str,
    outcome: str,
    versions: str,
    names: Iterable[str] = (),
    fallback_criu_version: str = "",
) -> Signature:
    """The signature of one failed or interrupted operation, from what its row says.

    `versions` is already plain ("lxd 5.0.2"); `fallback_criu_version` is what the host
    reported (its agent's `criu --version`) for when the log's own line is not in the text.
    """
    names = list(names)
    platform_text, _, _ = split_error(error)
    # LXD quotes CRIU's lines in its own error, and the panel adds them from CRIU's log:
    # the first such line is CRIU's part; LXD's part is the rest of LXD's own text.
    criu_line = normalise(first_criu_error(error), names)
    platform_lines = [line for line in platform_text.splitlines() if not CRIU_ERROR.search(line)]
    platform = normalise(" ".join(platform_lines), names)
    if not platform:
        platform = normalise(first_sentence(outcome), names)
    version = ""
    if criu_line:
        version = criu_version(error) or criu_version(fallback_criu_version) or "unknown"
    return Signature(
        kind=kind,
        phase=phase_of(stages),
        criu=criu_line,
        platform=platform,
        versions=versions,
        criu_version=version,
    )
