"""Trust tokens: how a client certificate gets trusted by an Incus host (and, optionally, LXD).

Incus has no trust passwords. A token is single-use: a client sends it once with its
certificate (`POST /1.0/certificates` with `trust_token`) and the token is gone. So `up` keeps
one unused token per Incus host in state.json, making a new one once it has been used, and
`lab.py token HOST` prints a fresh one whenever a test needs its own.
"""

from __future__ import annotations

import base64
import json
import secrets

from .base import LabError, run, write_private
from .host import Host


def new_trust_token(host: Host, name: str | None = None) -> str:
    """A new token for a client certificate named `name` (default: a fresh lab-test-* name),
    as the daemon's own client prints it (`incus config trust add NAME`)."""
    name = name or f"lab-test-{secrets.token_hex(4)}"
    if host.kind == "incus":
        command = ["incus", "config", "trust", "add", name]
    else:  # LXD 5.0 names the client with a flag
        command = ["lxc", "config", "trust", "add", "--name", name]
    output = run(command, env=host.lxc_env(), stdout_only=True).stdout
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines or " " in lines[-1]:
        raise LabError(f"{host.name}: no token in the output of {' '.join(command)}:\n{output}")
    return lines[-1]


def token_secret(token: str) -> str | None:
    """A token is base64 of JSON naming the client, the server's fingerprint and addresses,
    and the secret the server checks."""
    try:
        return json.loads(base64.b64decode(token, validate=True)).get("secret")
    except (ValueError, AttributeError):
        return None


def pending_secrets(host: Host) -> set[str]:
    """The secrets of the tokens the daemon would still accept (unused, unexpired)."""
    command = [host.client, "config", "trust", "list-tokens", "--format", "json"]
    # stdout only: the incus client's first run in a fresh config folder prints a greeting
    # ("To start your first container, try: ...") on stderr.
    output = run(command, env=host.lxc_env(), stdout_only=True).stdout
    return {entry.get("secret", "") for entry in json.loads(output or "[]")} - {""}


def ensure_trust_token(host: Host) -> str:
    """An unused token for the panel's tests in the host's tree (state.json: trust_token)."""
    token = host.trust_token()
    if token is None or token_secret(token) not in pending_secrets(host):
        token = new_trust_token(host)
        write_private(host.token_file, token)
    return token
