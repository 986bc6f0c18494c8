"""manage.py agent_access against the suite's real Redis: the user it makes, what it prints
(once), what it refuses, and the revocation."""

from __future__ import annotations

import io

import pytest
import redis
from django.core.management import CommandError, call_command

from panel.broker import redis_client
from panel.hosts.agent_access import queue_for
from tests.helpers import make_host

pytestmark = pytest.mark.django_db
FINGERPRINT = "ab" * 32


def agent_access(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_access", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_makes_a_user_that_can_consume_only_its_own_queue_and_prints_its_url_once():
    make_host("h1", facts={"certificate_fingerprint": FINGERPRINT})
    queue = queue_for(FINGERPRINT)
    try:
        output = agent_access("h1")
        url = output.split("PANEL_REDIS_URL=", 1)[1].split()[0]
        assert url.startswith(f"redis://{queue}:") and "shown once" in output
        agent = redis.Redis.from_url(url)
        assert agent.brpop([queue], timeout=0.1) is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.brpop(["panel"], timeout=0.1)
        again = agent_access("h1").split("PANEL_REDIS_URL=", 1)[1].split()[0]
        assert again != url, "a second run gives a new password"
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(url).ping()
        assert "shut out" in agent_access("h1", "--revoke")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(again).ping()
    finally:
        redis_client().acl_deluser(queue)


def test_print_only_applies_nothing_and_gives_the_redis_cli_line():
    make_host("h1", facts={"certificate_fingerprint": FINGERPRINT})
    output = agent_access("h1", "--print-only")
    queue = queue_for(FINGERPRINT)
    assert f"redis-cli ACL SETUSER {queue} reset on '>" in output
    assert f"'~{queue}*'" in output and f"'&celery-task-meta-{queue}.*'" in output
    assert queue not in redis_client().acl_users()


def test_it_refuses_an_unknown_host_and_one_whose_identity_is_not_known_yet():
    with pytest.raises(CommandError, match="No host named 'nope'"):
        agent_access("nope")
    make_host("fresh", facts={})
    with pytest.raises(CommandError, match="sync it first"):
        agent_access("fresh")
