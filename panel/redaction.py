"""Redaction: the one policy for what never leaves the panel's trust boundary.

Everything that shows or ships a container's or a host's values passes through a `Redactor`:
the container page and its fragments, the JSON API, the instance logs the panel stores, the
operations' errors, outcomes and timelines, the audit trail and its export, bug bundles and
their report.md, and the log lines of the panel itself (docs/security.md lists them).

What is removed (docs/security.md says it for users):
- the value of every config key whose name suggests a secret (password, passwd, pass, pwd,
  secret, token, key, credential, auth, private...), in any namespace and any case; every
  `environment.*`, `cloud-init.*` and user-data value;
- in any text (a config value, a log, an error): credentials inside URLs, `KEY=value` and
  `key: value` pairs whose key looks secret, `lxc.environment = NAME=value`, `Authorization:`
  headers and bearer tokens, PEM private keys (also when a cap cut them), LXD trust tokens
  (also when wrapped across lines), the panel's own API tokens;
- every value the redactor knows is secret (learnt from the keys above, or given: the Redis
  and database passwords), wherever it is repeated, even split across lines.

The class is pure (no LXD, no database, no settings) and fast enough to run on every view of
a container page; `policy()` builds one with the panel's settings.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# A key is secret when one of its words contains a long marker, or is or ends with a short
# one ("sshkey", "db_pass"); "auth" also starts words ("authorized_keys", "authtoken").
LONG_MARKERS = ("password", "passwd", "passphrase", "secret", "token", "credential", "private",
                "apikey", "privkey", "cookie")  # fmt: skip
SHORT_MARKERS = ("pass", "pwd", "key", "keys", "cred", "creds", "auth", "psk")
ALWAYS_SECRET = re.compile(
    r"^(?:environment\.|cloud-init\.|user\.(?:user|vendor|meta)-data$|user\.network-config$)",
    re.I,
)
KEY_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Cheap filter before the word check: keys with none of these fragments are never secret.
MARKER_FRAGMENT = re.compile(r"(?i)pass|pwd|pw|secret|token|key|cred|auth|priva|cookie|psk")

PRIVATE_KEY = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
PRIVATE_KEY_END = r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
PRIVATE_KEY_BLOCK = re.compile(f"{PRIVATE_KEY}.*?{PRIVATE_KEY_END}", re.S)
# A block cut by a size cap: its BEGIN without END (the cap kept the head) or its END without
# BEGIN (the cap kept the tail). Both are still key material.
PRIVATE_KEY_HEAD = re.compile(f"{PRIVATE_KEY}.*\\Z", re.S)
PRIVATE_KEY_TAIL = re.compile(f"\\A.*?{PRIVATE_KEY_END}", re.S)
URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{1,15}://)(?P<userinfo>[^/\s\"'<>?#\[\]]+)@"
)
AUTHORIZATION = re.compile(
    r"(?i)(?P<key>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:basic|bearer|digest|token|negotiate|ntlm|hoba|mutual|aws4-hmac-sha256)\s+)?)"
    r"(?P<value>[^\"'\r\n]+)"
)
BEARER = re.compile(r"(?i)(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/-]{8,}=*)")
LXC_ENVIRONMENT = re.compile(
    r"(?P<key>\blxc\.environment\s*=\s*[^=\s\"'\\]+=)(?P<value>[^\r\n\"\\]*)"
)
# `NAME=value`, `name: value`, `"name": "value"`, `--name=value` whose name looks secret. Found
# from the markers out (str.find on an ASCII-lowered copy: a case-insensitive regex of these
# alternatives costs 20 times more on a big log), then the name around each and what follows.
ASSIGNMENT_MARKERS = (b"pass", b"pwd", b"pw", b"secret", b"token", b"key", b"cred", b"auth",
                      b"priva", b"cookie", b"psk", b"environment.", b"cloud-init.", b"-data",
                      b"network-config")  # fmt: skip
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
ASSIGNMENT_TAIL = re.compile(
    r"[\"']?[ \t]*(?:=|:(?!//))[ \t]*(?P<value>\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s\"',;}\]\\]+)"
)
# A YAML line `key: |` (or `>`): its block is every following line indented deeper.
YAML_BLOCK = re.compile(r"^(?P<indent>\s*)[\"']?(?P<name>[^\s:\"']+)[\"']?:\s*[|>][-+0-9]*\s*$")
# Base64 of a JSON object (it starts `ey` or `ew`), also wrapped across lines: LXD and Incus
# trust tokens are base64 of JSON holding "secret".
BASE64_RUN = re.compile(r"\be[wy][A-Za-z0-9+/]{14,}(?:(?:\r?\n[ \t]*|\\n)[A-Za-z0-9+/]{4,})*={0,2}")
PANEL_TOKEN = re.compile(r"\blxdp_[A-Za-z0-9_-]{16,}")
HARMLESS_VALUES = {"", "true", "false", "null", "none", "yes", "no", "[redacted]"}
# Where a known value may be split: whitespace, or an escaped newline in JSON/YAML text.
SPLIT = r"(?:\s+|\\[nrt])*"
SPLITTERS = re.compile(r"\s+|\\[nrt]")


def is_secret_key(key: str) -> bool:
    """Whether a config key (or any `KEY=` name) names a secret, in any namespace or case."""
    if ALWAYS_SECRET.match(key):
        return True
    if not MARKER_FRAGMENT.search(key):
        return False
    for word in KEY_WORDS.findall(key):
        word = word.lower()
        if any(marker in word for marker in LONG_MARKERS) or word.startswith("auth"):
            return True
        if word == "pw" or word.endswith(SHORT_MARKERS):
            return True
    return False


def secret_kind(key: str) -> str:
    """What the manifest calls a value removed under this key (counts only, never values)."""
    lowered = key.lower()
    if lowered.startswith("environment.") or lowered.startswith("lxc.environment"):
        return "environment value"
    if lowered.startswith("cloud-init.") or lowered.endswith(("-data", "network-config")):
        return "cloud-init user data"
    if lowered.endswith("trust_password"):
        return "trust password"
    return "secret value"


def without_credentials(url: str) -> str:
    """A URL as it may be shown or logged: no user name, no password, and no query (redis-py
    reads `?password=` there too)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return URL_CREDENTIALS.sub(lambda m: m.group("scheme"), url)
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Redactor:
    """Removes secrets from text and config dictionaries, counting what it removed by kind
    (a bundle's manifest shows the counts, never the values)."""

    # Shorter values are not hunted for elsewhere: "1" or "true" would match noise; a split
    # value needs a few more characters before its pieces mean anything.
    MIN_KNOWN_LENGTH = 6
    MIN_SPLIT_LENGTH = 8

    def __init__(self, admin_patterns: Iterable[str] = (), known: Iterable[str] = ()) -> None:
        self.admin_patterns = [re.compile(pattern) for pattern in admin_patterns]
        # Secret values found under a key; an error message or another log may repeat them
        # without their key, so they are removed everywhere (`known_values`).
        self.known: set[str] = set()
        self._split_cache: dict[str, re.Pattern] = {}
        self._pieces: tuple[str, ...] | None = None
        for value in known:
            self.learn(value)

    def learn(self, value: object) -> None:
        text = str(value).strip().strip("\"'")
        if len(text) >= self.MIN_KNOWN_LENGTH and not text.startswith("[REDACTED"):
            self.known.add(text)
            self._pieces = None
            if "%" in text:  # a URL's percent-encoded password is also known decoded
                self.learn(unquote(text))

    def learn_config(self, config: dict) -> None:
        """Learn the secret values of a config without copying it (a page that shows only
        logs or errors still removes what the container's config holds)."""
        for key, value in config.items():
            if isinstance(value, str) and "\n" not in value and is_secret_key(str(key)):
                self.learn(value)

    # --- structured values ---------------------------------------------------------------

    def config(self, config: dict, counts: Counter | None = None) -> dict:
        """A copy of an LXD config dictionary: secret keys' values replaced, every other
        string value passed through `text` (URL credentials, raw.lxc lines, keys in PEM)."""
        counts = Counter() if counts is None else counts
        self.learn_config(config)
        clean: dict = {}
        for key, value in config.items():
            if is_secret_key(str(key)) and not _harmless(value):
                clean[key] = REDACTED
                counts[secret_kind(str(key))] += 1
            elif isinstance(value, str):
                clean[key] = self._patterns(value, counts)
            elif isinstance(value, dict):
                clean[key] = self.config(value, counts)
            else:
                clean[key] = value
        strings = [key for key, value in clean.items() if isinstance(value, str)]
        # One look for known values over all of them: most configs repeat none.
        if self.known and self._holds_known_piece("\n".join(clean[key] for key in strings)):
            for key in strings:
                clean[key] = self.known_values(clean[key], counts)
        return clean

    def devices(self, devices: dict, counts: Counter | None = None) -> dict:
        return {
            name: self.config(device, counts) if isinstance(device, dict) else device
            for name, device in devices.items()
        }

    # --- text ------------------------------------------------------------------------------

    def text(self, text: str, counts: Counter | None = None) -> str:
        counts = Counter() if counts is None else counts
        return self.known_values(self._patterns(text, counts), counts)

    def _patterns(self, text: str, counts: Counter) -> str:
        if "PRIVATE KEY" in text:
            for pattern in (PRIVATE_KEY_BLOCK, PRIVATE_KEY_HEAD, PRIVATE_KEY_TAIL):
                text = self._sub(pattern, "[REDACTED private key]", text, "private key", counts)
        if "://" in text:
            text = URL_CREDENTIALS.sub(lambda match: self._userinfo(match, counts), text)
        if "\n" in text:
            text = self._yaml_blocks(text, counts)
        if "uthorization" in text or "UTHORIZATION" in text:
            text = self._sub_value(AUTHORIZATION, text, "Authorization header", counts)
        if "earer" in text or "EARER" in text:
            text = self._sub_value(BEARER, text, "token", counts)
        if "lxc.environment" in text:
            text = self._sub_value(LXC_ENVIRONMENT, text, "environment value", counts)
        if "=" in text or ":" in text:  # no assignment without its separator
            text = self._assignments(text, counts)
        text = BASE64_RUN.sub(lambda match: self._token(match, counts), text)
        if "lxdp_" in text:
            text = self._sub(PANEL_TOKEN, "[REDACTED panel token]", text, "panel token", counts)
        for number, pattern in enumerate(self.admin_patterns, start=1):
            text = self._sub(pattern, REDACTED, text, f"admin pattern {number}", counts)
        return text

    def known_values(self, text: str, counts: Counter | None = None) -> str:
        """Every known secret, also when whitespace or a line break splits it."""
        counts = Counter() if counts is None else counts
        if not self.known or not self._holds_known_piece(text):
            return text  # the common case
        compact = None
        for value in sorted(self.known, key=len, reverse=True):
            if value in text:
                found = text.count(value)
                text = text.replace(value, REDACTED)
                counts["known secret value repeated"] += found
                compact = None
            if len(value) < self.MIN_SPLIT_LENGTH:
                continue
            if compact is None:  # the text without what may split a value
                compact = SPLITTERS.sub("", text)
            if SPLITTERS.sub("", value) in compact:
                text, found = self._split_pattern(value).subn(REDACTED, text)
                if found:
                    counts["known secret value repeated"] += found
                    compact = None
        return text

    def _holds_known_piece(self, text: str) -> bool:
        """Whether the text holds any known value's first or last 4 characters: a value split
        (once, or at a few places not all near its ends) still shows one of them whole, so
        without one the text holds no known value (`in` is C-fast; a regex alternation of the
        pieces costs about a microsecond per character)."""
        if self._pieces is None:
            self._pieces = tuple({p for value in self.known for p in (value[:4], value[-4:])})
        return any(piece in text for piece in self._pieces)

    def _split_pattern(self, value: str) -> re.Pattern:
        if value not in self._split_cache:
            self._split_cache[value] = re.compile(SPLIT.join(re.escape(char) for char in value))
        return self._split_cache[value]

    def _yaml_blocks(self, text: str, counts: Counter) -> str:
        """`key: |` blocks under a secret key: every line indented deeper than the key."""
        lines, block_indent = text.split("\n"), None
        for index, line in enumerate(lines):
            indent = len(line) - len(line.lstrip())
            if block_indent is not None:
                if line.strip() and indent <= block_indent:
                    block_indent = None
                else:
                    lines[index] = " " * indent + REDACTED if line.strip() else line
                    continue
            match = YAML_BLOCK.match(line)
            if match and is_secret_key(match.group("name")):
                block_indent = indent
                counts[secret_kind(match.group("name"))] += 1
        return "\n".join(lines)

    def _userinfo(self, match: re.Match, counts: Counter) -> str:
        userinfo = match.group("userinfo")
        if userinfo.startswith("[REDACTED"):
            return match.group(0)
        self.learn(userinfo)
        self.learn(userinfo.partition(":")[2])
        counts["credentials in a URL"] += 1
        return f"{match.group('scheme')}{REDACTED}@"

    def _assignments(self, text: str, counts: Counter) -> str:
        pieces, copied, scanned = [], 0, 0
        for start, end in _markers(text):
            if start < scanned:
                continue  # another marker inside a name already looked at
            while start > copied and text[start - 1] in NAME_CHARS:
                start -= 1
            while end < len(text) and text[end] in NAME_CHARS:
                end += 1
            scanned = end
            tail = ASSIGNMENT_TAIL.match(text, end)
            if tail is None or not is_secret_key(text[start:end]):
                continue
            value = tail.group("value")
            bare = value.strip("\"'")
            following = text[tail.end() : tail.end() + 12].lstrip(" ")
            if bare.lower() in HARMLESS_VALUES or bare.startswith(("[REDACTED", "|", ">")):
                continue
            if following.startswith("[REDACTED"):  # "Authorization: Basic [REDACTED]"
                continue
            self.learn(bare)
            counts[secret_kind(text[start:end])] += 1
            quote = value[0] if value[:1] in ("'", '"') else ""
            pieces += [text[copied : tail.start("value")], f"{quote}{REDACTED}{quote}"]
            copied = scanned = tail.end("value")
        return "".join(pieces) + text[copied:]

    def _token(self, match: re.Match, counts: Counter) -> str:
        """A base64 run that decodes to JSON holding "secret" (an LXD or Incus trust token);
        a wrapped run may have swallowed the next line's first word, so shorter prefixes of
        its lines are tried too."""
        run = match.group(0)
        pieces = re.split(r"\r?\n[ \t]*|\\n", run)
        for end in range(len(pieces), 0, -1):
            candidate = "".join(pieces[:end])
            if _is_trust_token(candidate):
                self.learn(candidate)
                counts["trust token"] += 1
                return "[REDACTED trust token]" + run[len(_joined_prefix(run, pieces, end)) :]
        return run

    @staticmethod
    def _sub(pattern: re.Pattern, replacement: str, text: str, kind: str, counts: Counter) -> str:
        text, found = pattern.subn(replacement, text)
        if found:
            counts[kind] += found
        return text

    def _sub_value(self, pattern: re.Pattern, text: str, kind: str, counts: Counter) -> str:
        def replace(match: re.Match) -> str:
            value = match.group("value").strip()
            if value.startswith("[REDACTED") or not value:
                return match.group(0)
            counts[kind] += 1
            self.learn(value)
            return match.group("key") + REDACTED

        return pattern.sub(replace, text)


def _harmless(value: object) -> bool:
    """Not a secret even under a secret-looking key: empty, or a flag."""
    return value is None or isinstance(value, bool) or str(value).strip().lower() in (
        "", "true", "false"
    )  # fmt: skip


def _markers(text: str) -> list[tuple[int, int]]:
    """(start, end) of every assignment marker, in order; the ASCII copy keeps positions
    (each non-ASCII character becomes one '?')."""
    lowered = text.encode("ascii", "replace").lower()
    found = []
    for marker in ASSIGNMENT_MARKERS:
        position = lowered.find(marker)
        while position != -1:
            found.append((position, position + len(marker)))
            position = lowered.find(marker, position + 1)
    return sorted(found)


def _is_trust_token(candidate: str) -> bool:
    try:
        decoded = json.loads(base64.b64decode(candidate + "==", validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "secret" in decoded


def _joined_prefix(run: str, pieces: list[str], end: int) -> str:
    """The part of `run` (separators included) that holds its first `end` pieces."""
    position = 0
    for piece in pieces[:end]:
        position = run.index(piece, position) + len(piece)
    return run[:position]


def policy(config: dict | None = None, known: Iterable[str] = ()) -> Redactor:
    """The panel's redactor: the administrator's extra patterns, the panel's own secrets
    (the Redis and database passwords, the secret key), and what `config` holds."""
    from django.conf import settings

    redactor = Redactor(settings.REDACT_PATTERNS, [*panel_secrets(), *known])
    if config:
        redactor.learn_config(config)
    return redactor


def panel_secrets() -> list[str]:
    """Secrets of the panel itself that an error or a log line could quote."""
    from django.conf import settings

    found = [settings.SECRET_KEY]
    urls = [settings.CELERY_BROKER_URL, str(getattr(settings, "CELERY_RESULT_BACKEND", ""))]
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    found += [str(database.get("PASSWORD") or "") for database in settings.DATABASES.values()]
    return [secret for secret in found if secret]


@dataclass(frozen=True)
class ShownConfig:
    """A container's config and devices as pages and the API show them, and which config
    keys had something removed (an administrator may reveal those one at a time)."""

    config: dict
    devices: dict
    redacted_keys: list[str]


def shown_config(config: dict, devices: dict) -> ShownConfig:
    redactor = policy(config)
    clean = redactor.config(config)
    return ShownConfig(
        config=clean,
        devices=redactor.devices(devices),
        redacted_keys=sorted(key for key, value in clean.items() if value != config[key]),
    )


class RedactingFilter(logging.Filter):
    """Every log line through the policy, so a message or an exception that quotes the Redis
    URL or a container's value does not carry it into a log file (settings.LOGGING, and the
    Celery worker's own handlers in workers/celery.py)."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._redactor: Redactor | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._redactor is None:
            self._redactor = policy()
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self._redactor.text(message), None
        if record.exc_text:
            record.exc_text = self._redactor.text(record.exc_text)
        return True
