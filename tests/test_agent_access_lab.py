"""An agent fenced by its own Redis ACL user (manage.py agent_access): it still does its job
(a bundle collects its host items) and its credentials can do nothing else: no other host's
queue or replies, no panel job."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.core.management import call_command

from panel.broker import redis_client
from panel.hosts import agent_access
from panel.hosts.agent_access import queue_for
from panel.models import Bundle, Instance
from tests.conftest import ROOT, agent_answers, wait_for
from tests.lab_tools import enroll, running_counter

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
LAB_PY = str(ROOT / "lab" / "lab.py")


def start_agent(host_name: str, redis_url: str) -> None:
    subprocess.run(
        ["python3", LAB_PY, "agents", "start", "--host", host_name, "--python", sys.executable,
         "--redis-url", redis_url], check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def fenced_agent(lab, lab_agents):
    """host1's agent restarted with the Redis user agent_access made for it (and put back on
    the session's Redis URL afterwards); yields (host1, host2, the agent's URL)."""
    host1, host2 = enroll(lab["hosts"][0]), enroll(lab["hosts"][1])
    out = io.StringIO()
    call_command("agent_access", host1.name, stdout=out)
    url = out.getvalue().split("PANEL_REDIS_URL=", 1)[1].split()[0]
    queue = queue_for(host1.facts["certificate_fingerprint"])
    start_agent(host1.name, url)
    try:
        wait_for(lambda: agent_answers(queue), timeout=60, interval=1, what="the fenced agent")
        yield host1, host2, url
    finally:
        start_agent(host1.name, settings.CELERY_BROKER_URL)
        redis_client().acl_deluser(agent_access.user_name(queue))


def test_a_fenced_agent_still_fills_its_hosts_part_of_a_bundle(
    celery_worker, admin_client, fenced_agent, lab
):
    host1, _, _ = fenced_agent
    with running_counter(lab, lab["hosts"][0], "fenced", at_least=1) as name:
        from panel.hosts.inventory import sync

        sync(host1)
        instance = Instance.objects.get(host=host1, name=name)
        assert admin_client.post(f"/containers/{instance.pk}/bundle/").status_code == 302
        bundle = wait_for(
            lambda: Bundle.objects.exclude(status="collecting").filter(instance=instance).first(),
            timeout=120, what="the bundle",
        )  # fmt: skip
    items = {item["name"]: item for item in bundle.manifest["items"]}
    for item in ("dmesg.txt", "uname.txt", "lxd.log", "criu-check.txt"):
        assert items[f"host1/{item}"]["status"] == "collected", items[f"host1/{item}"]


def test_a_fenced_agents_credentials_reach_nothing_but_its_own_queue_and_replies(fenced_agent):
    host1, host2, url = fenced_agent
    mine, other = (queue_for(h.facts["certificate_fingerprint"]) for h in (host1, host2))
    agent = redis.Redis.from_url(url)
    assert agent.ping()
    refused = [
        lambda: agent.lrange(other, 0, -1),  # another host's jobs
        lambda: agent.brpop([other], timeout=1),
        lambda: agent.lpush(other, "forged job"),
        lambda: agent.get(f"celery-task-meta-{other}.{uuid.uuid4()}"),  # another host's reply
        lambda: agent.set(f"celery-task-meta-{other}.{uuid.uuid4()}", "forged items"),
        lambda: agent.publish(f"celery-task-meta-{other}.{uuid.uuid4()}", "forged items"),
        lambda: agent.set(f"celery-task-meta-{uuid.uuid4()}", "a panel task's result"),
        lambda: agent.lpush("panel", "a panel job"),  # the panel's own queue
        lambda: agent.sadd(f"_kombu.binding.{mine}", "route my jobs elsewhere"),
        lambda: agent.hgetall("unacked"),  # the panel workers' jobs in flight
        lambda: agent.keys("*"),
        lambda: agent.config_get("*"),
        lambda: agent.flushall(),
    ]
    for attempt in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    pubsub = agent.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        pubsub.subscribe(f"celery-task-meta-{other}.x")
        pubsub.get_message(timeout=1)
    # Its own: the reply keys it writes.
    assert agent.set(f"celery-task-meta-{mine}.{uuid.uuid4()}", "{}", ex=5)


def test_a_fenced_agent_cannot_send_a_panel_job_through_celery(fenced_agent):
    _, _, url = fenced_agent
    intruder = Celery("intruder", broker=url)
    intruder.conf.broker_connection_retry = False
    intruder.conf.broker_connection_max_retries = 0
    with pytest.raises(Exception, match=r"NOPERM|permission"):
        intruder.send_task("panel.hosts.tasks.sync_all_hosts", queue="panel", retry=False)
