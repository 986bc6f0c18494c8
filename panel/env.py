"""Read settings from environment variables, failing loudly on bad values.

django-environ and friends turn an unparseable boolean into False; an admin who wrote
PANEL_DEBUG=ture deserves an error naming the variable instead, so this is done here.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class Env:
    """Typed access to a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    # Inside the class these method names shadow the builtins, so the signatures below name
    # the types as builtins.str and builtins.list.
    def str(self, name: str, default: str) -> str:
        return self.environ.get(name, default).strip()

    def bool(self, name: builtins.str, default: bool) -> bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a boolean: use one of true/false, 1/0, yes/no, on/off."
        )

    def int(self, name: builtins.str, default: int, minimum: int = 0) -> int:
        raw = self.environ.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
        if value < minimum:
            raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
        return value

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str]
    ) -> builtins.list[builtins.str]:
        raw = self.environ.get(name)
        if raw is None:
            return default
        return [item.strip() for item in raw.split(",") if item.strip()]

    def networks(self, name: builtins.str) -> builtins.list[builtins.str]:
        """A comma-separated list of addresses or networks (127.0.0.1, 127.0.0.0/8)."""
        found = self.list(name, [])
        for network in found:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name}: {network!r} is not an address or network "
                    "(e.g. 127.0.0.1 or 127.0.0.0/8)."
                ) from None
        return found

    def regexes(self, name: builtins.str) -> builtins.list[builtins.str]:
        """A JSON list of regular expressions (JSON, because regexes contain commas)."""
        raw = self.str(name, "[]") or "[]"
        try:
            patterns = json.loads(raw)
        except ValueError:
            patterns = None
        if not isinstance(patterns, builtins.list) or not all(
            isinstance(p, builtins.str) for p in patterns
        ):
            raise ImproperlyConfigured(
                f'{name} must be a JSON list of regexes, e.g. ["corp-[0-9]+"].'
            )
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ImproperlyConfigured(
                    f"{name}: {pattern!r} is not a valid regex ({error})."
                ) from None
        return patterns

    def choice(
        self, name: builtins.str, default: builtins.str, choices: builtins.list[builtins.str]
    ) -> builtins.str:
        value = self.str(name, default)
        if value not in choices:
            raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
        return value


def secret_key_from(env: Env, data_dir: Path) -> str:
    """PANEL_SECRET_KEY, or a key generated once into the data folder (owner-only)."""
    given = env.str("PANEL_SECRET_KEY", "")
    if given:
        if len(given) < 32:
            raise ImproperlyConfigured("PANEL_SECRET_KEY is too short: use at least 32 characters.")
        return given
    key_file = data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Write a private temporary file, then link it into place: the link fails if another
    # process (web, worker, beat start together) won the race, and nobody reads half a key.
    temporary = data_dir / f".secret_key.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    try:
        os.link(temporary, key_file)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return key_file.read_text().strip()
