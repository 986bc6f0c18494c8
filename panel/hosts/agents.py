"""Asking a host's agent (a Celery worker running ON the LXD host, docs/agent.md) for what
only the host has. Its reply refreshes the host's agent facts (criu check, CPU flags);
silence leaves them as they were, and capabilities then age them out."""

from __future__ import annotations

import logging
import time

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.utils import timezone

from panel.hosts.agent_access import queue_for, reply_id
from panel.hosts.models import Host
from workers.agent import probe_task, stuck_dump_task

logger = logging.getLogger(__name__)


def ask_agent(host: Host, task, *args):
    """Send a task to the host's agent, or None when the host has no known identity yet.
    It expires with the wait: an agent that comes back later must not work for nobody."""
    fingerprint = host.facts.get("certificate_fingerprint", "")
    if not fingerprint:
        return None
    queue = queue_for(fingerprint)
    return task.apply_async(
        args=args, queue=queue, task_id=reply_id(queue), expires=settings.AGENT_TIMEOUT_SECONDS
    )


def agent_reply(host: Host, pending, deadline: float) -> tuple[dict | None, str]:
    """(reply, why not): waits at most until the shared deadline, then forgets the result."""
    if pending is None:
        return None, "the host's identity (server certificate) is not known yet: sync the host"
    try:
        reply = pending.get(
            timeout=max(0.1, deadline - time.monotonic()), disable_sync_subtasks=False
        )
    except CeleryTimeout:
        queue = queue_for(host.facts["certificate_fingerprint"])
        return None, (
            f"no agent answered on queue {queue} within {settings.AGENT_TIMEOUT_SECONDS} s: "
            f"is the agent running on {host.name}? (docs/agent.md)"
        )
    except Exception as error:
        return None, f"the agent on {host.name} failed: {error.__class__.__name__}: {error}"
    finally:
        pending.forget()  # the reply holds unredacted host files: keep it no longer than needed
    Host.objects.filter(pk=host.pk).update(agent_facts=reply["facts"], agent_seen_at=timezone.now())
    return reply, ""


def probe(hosts: list[Host]) -> None:
    """Ask every agent for its facts at once; an answer refreshes agent_facts and
    agent_seen_at, silence leaves both as they were (capabilities then age them out)."""
    asked = [(host, ask_agent(host, probe_task)) for host in hosts]
    deadline = time.monotonic() + settings.AGENT_TIMEOUT_SECONDS
    for host, pending in asked:
        if pending is None:
            continue
        try:
            found = pending.get(timeout=max(0.1, deadline - time.monotonic()),
                                disable_sync_subtasks=False)  # fmt: skip
        except Exception as error:
            logger.info("agent of %s did not answer: %s", host.name, error)
            continue
        finally:
            pending.forget()
        Host.objects.filter(pk=host.pk).update(agent_facts=found, agent_seen_at=timezone.now())


def stuck_dump(host: Host, name: str, how: str) -> tuple[dict | None, str]:
    """Ask the host's agent about a live migration's stuck CRIU dump of `name`, and with
    how="resume" (or "stop") to end it (workers/dumps.py): (its report, why not)."""
    try:
        pending = ask_agent(host, stuck_dump_task, name, how)
    except Exception as error:  # the job queue does not answer
        return None, f"the agent could not be asked ({error.__class__.__name__}: {error})"
    if pending is None:
        return None, "the host's identity (server certificate) is not known yet: sync the host"
    try:
        reply = pending.get(timeout=settings.AGENT_TIMEOUT_SECONDS, disable_sync_subtasks=False)
    except CeleryTimeout:
        queue = queue_for(host.facts["certificate_fingerprint"])
        return None, (
            f"no agent answered on queue {queue} within {settings.AGENT_TIMEOUT_SECONDS} s "
            f"(is the agent running on {host.name}? docs/agent.md)"
        )
    except Exception as error:
        return None, f"the agent on {host.name} failed: {error.__class__.__name__}: {error}"
    finally:
        pending.forget()
    Host.objects.filter(pk=host.pk).update(agent_seen_at=timezone.now())
    if reply.get("refused"):
        return None, f"the agent on {host.name} refused: {reply['refused']}"
    return reply, ""
