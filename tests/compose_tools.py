"""docker-compose.yml's services as processes on this machine: each one's command and
healthcheck, interpolated as compose would, with the test's own ports, folders and databases
in place of the containers' (tests/test_compose_services.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::([-?])([^}]*))?\}|\$\$")


def interpolate(text: str, dotenv: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} and $$, from the given .env."""

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, rest = match.groups()
        if name in dotenv and dotenv[name] != "":
            return dotenv[name]
        if kind == "?":
            raise KeyError(f"compose would refuse to start: {rest}")
        return rest if kind == "-" else ""

    return INTERPOLATION.sub(value, text)


def command(service: str, dotenv: dict[str, str], replace: dict[str, str] | None = None) -> str:
    text = interpolate(" ".join(SERVICES[service]["command"].split()), dotenv)
    for old, new in (replace or {}).items():
        assert old in text, f"{service}'s command no longer has {old!r}"
        text = text.replace(old, new)
    return text


def healthcheck(service: str, dotenv: dict[str, str], replace: dict[str, str]) -> list[str]:
    """The healthcheck's test as an argv (CMD) or a shell line (CMD-SHELL)."""
    test = [interpolate(part, dotenv) for part in SERVICES[service]["healthcheck"]["test"]]
    kind, *argv = test
    for old, new in replace.items():
        argv = [part.replace(old, new) for part in argv]
    return argv if kind == "CMD" else ["sh", "-c", argv[0]]


def environment(service: str, dotenv: dict[str, str], **overrides: str) -> dict[str, str]:
    """The service's environment as compose sets it, then what the test must point elsewhere
    (its database, its Redis, its data folder), on top of this process's PATH."""
    declared = SERVICES[service].get("environment", {})
    env = {name: interpolate(str(value), dotenv) for name, value in declared.items()}
    # The image's python, gunicorn and celery are this virtualenv's.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {**os.environ, "PATH": path, **env, **overrides}


def run_check(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
