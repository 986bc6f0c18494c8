"""Each host's agent gets a Redis user of its own that can do its job and nothing else.

An agent runs as root on an LXD host. With the panel's own Redis credentials, any host could
enqueue panel jobs, read other hosts' replies or forge bundle items. Its Redis 7 ACL user
`agent.<16 hex>` may only:
- consume its queue `agent.<16 hex>` (and kombu's priority lists and its own unacknowledged
  keys, all named after the queue: `fence` in workers/agent.py keeps them there);
- read (not write) that queue's binding, which the panel declares when it sends;
- write and publish its replies, `celery-task-meta-agent.<16 hex>.*` (the panel gives every
  job it sends an agent an id with that prefix, `reply_id`);
with the few commands those need. Everything else is NOPERM.
"""

from __future__ import annotations

import secrets
import uuid
from urllib.parse import quote, urlsplit

QUEUE_PREFIX = "agent."


def queue_for(fingerprint: str) -> str:
    """The queue of the host whose LXD server certificate has this SHA-256 fingerprint."""
    return QUEUE_PREFIX + fingerprint[:16]


def reply_id(queue: str) -> str:
    """A task id for a job sent to an agent: its reply is stored under
    celery-task-meta-<queue>.<uuid>, the only result keys that agent's Redis user may write,
    so no agent can forge another host's reply."""
    return f"{queue}.{uuid.uuid4()}"


COMMANDS = [
    "ping", "select", "multi", "exec", "discard",
    "brpop", "llen", "lpush", "rpush",  # consume; put back what a dying agent held
    "get", "set", "setex", "del", "publish",  # replies; the unacked mutex
    "hset", "hget", "hdel", "zadd", "zrem", "zrange", "zrangebyscore", "zrevrangebyscore",
    "smembers", "sunion",  # read the binding
    "evalsha", "eval", "script|load", "script|exists",  # kombu's scripts, checked per call
]  # fmt: skip


def user_name(queue: str) -> str:
    return queue


def acl_rules(queue: str, password: str) -> list[str]:
    """The ACL SETUSER arguments for the agent of `queue`, password included."""
    return [
        "reset", "on", f">{password}", "resetkeys", "resetchannels", "-@all",
        *(f"+{command}" for command in COMMANDS),
        f"~{queue}*",
        f"%R~_kombu.binding.{queue}",
        f"~celery-task-meta-{queue}.*",
        f"&celery-task-meta-{queue}.*",
    ]  # fmt: skip


def new_password() -> str:
    return secrets.token_hex(32)  # hex: nothing to quote in a URL or a shell


def agent_url(panel_url: str, queue: str, password: str) -> str:
    """The PANEL_REDIS_URL for that agent: the panel's Redis (redis:// or rediss://, host,
    port, database), with the agent's user and password instead of the panel's."""
    parts = urlsplit(panel_url)
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(user_name(queue), safe='')}:{password}@{parts.hostname}{port}"
    return parts._replace(netloc=netloc).geturl()


def redis_cli_command(queue: str, password: str) -> str:
    """The same rule as one line for redis-cli, for admins who manage Redis by hand."""
    quoted = " ".join(f"'{rule}'" if any(c in rule for c in "*|%&~>") else rule
                      for rule in acl_rules(queue, password))  # fmt: skip
    return f"ACL SETUSER {user_name(queue)} {quoted}"
