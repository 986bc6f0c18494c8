"""Give one host's agent a Redis user of its own (panel/hosts/agent_access.py says what it may
do), and print the PANEL_REDIS_URL the agent needs, password included, once.

    manage.py agent_access host1               # create or replace the user in the panel's Redis
    manage.py agent_access host1 --print-only  # only print the redis-cli command to run
    manage.py agent_access host1 --revoke      # delete the user: that agent is shut out
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from panel.broker import redis_client, without_credentials
from panel.hosts import agent_access
from panel.hosts.agent_access import queue_for
from panel.models import Host


class Command(BaseCommand):
    help = "Create (or revoke) the Redis ACL user of one host's agent."

    def add_arguments(self, parser):
        parser.add_argument("host", help="the host's name in the panel")
        parser.add_argument("--print-only", action="store_true", help="apply nothing")
        parser.add_argument("--revoke", action="store_true", help="delete the agent's user")

    def handle(self, *args, host: str, print_only: bool, revoke: bool, **options) -> None:
        found = Host.objects.filter(name=host).first()
        if found is None:
            raise CommandError(f"No host named {host!r}: `manage.py panel hosts` lists them.")
        fingerprint = found.facts.get("certificate_fingerprint", "")
        if not fingerprint:
            raise CommandError(f"{host}'s identity is not known yet: sync it first.")
        queue = queue_for(fingerprint)
        user = agent_access.user_name(queue)
        if revoke:
            self._redis().acl_deluser(user)
            self._persist()
            self.stdout.write(f"Deleted the Redis user {user}: the agent of {host} is shut out.")
            return
        password = agent_access.new_password()
        if print_only:
            self.stdout.write(f"redis-cli {agent_access.redis_cli_command(queue, password)}")
        else:
            self._redis().execute_command("ACL", "SETUSER", user, *agent_access.acl_rules(
                queue, password))  # fmt: skip
            self._persist()
            self.stdout.write(f"Created the Redis user {user} in {self._shown()}.")
        url = agent_access.agent_url(settings.CELERY_BROKER_URL, queue, password)
        self.stdout.write(f"On {host}, run the agent with:\n  PANEL_REDIS_URL={url}")
        self.stdout.write("The password is shown once and kept nowhere but in Redis (hashed).")

    def _redis(self):
        try:
            client = redis_client()
            client.ping()
        except Exception as error:
            raise CommandError(f"Redis at {self._shown()} does not answer: {error}") from None
        return client

    def _persist(self) -> None:
        """ACL changes live in memory: write them to Redis's aclfile when it has one."""
        client = self._redis()
        if client.config_get("aclfile").get("aclfile"):
            client.acl_save()
        else:
            self.stderr.write(
                "Redis has no aclfile: this user is lost when Redis restarts. Add "
                "`aclfile /etc/redis/users.acl` to redis.conf (docs/production.md)."
            )

    def _shown(self) -> str:
        return without_credentials(settings.CELERY_BROKER_URL)
