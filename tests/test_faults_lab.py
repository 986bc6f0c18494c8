"""Faults with real processes (issue 8), each test asserting the final truth read from LXD:
a worker SIGKILLed in the middle of a stateful snapshot, Redis killed and restarted while
operations are queued and running, an LXD daemon killed during an operation.

(A worker killed during a live migration: tests/test_migration_lab.py. The same operation
asked twice at once: tests/test_reconciler.py.) Figures printed here are in docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django.utils.html import escape

from panel.hosts.inventory import sync
from panel.models import Host, Instance, Operation
from panel.operations.reconciler import lxd_still_working, reconcile
from tests.conftest import doomed_worker, session_worker_paused, wait_for
from tests.fault_tools import kill_daemon, restore_lab
from tests.lab_tools import (
    instance_status,
    lxc,
    read_boot_id,
    running_counter,
    start_memory_churn,
)
from tests.test_bundles_lab import check_manifest_accounts_for_everything, download, ready

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def lxd_operation_started(pk: int) -> None:
    wait_for(
        lambda: Operation.objects.get(pk=pk).lxd_operation_ids,
        timeout=60,
        interval=0.02,
        what="LXD's operation to start",
    )


def after_silence() -> dt.datetime:
    """A moment at which every operation's worker has been silent long enough to settle."""
    return timezone.now() + dt.timedelta(seconds=settings.RECONCILE_SILENT_SECONDS + 1)


def ended(pk: int, timeout: float = 300) -> Operation:
    return wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first(),
        timeout=timeout,
        what=f"operation #{pk} to end",
    )


def ask(client, instance: Instance, kind: str, **fields) -> int:
    """Press an operation's button; the new operation's id."""
    response = client.post(f"/containers/{instance.pk}/operations/", {"kind": kind, **fields})
    assert response.status_code == 302 and "/operations/" in response["Location"], response
    return int(response["Location"].split("/")[2])


def snapshot_of(lab_host: dict, name: str, snapshot: str) -> dict | None:
    listing = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}/snapshots?recursion=1"))
    return next((s for s in listing if s["name"] == snapshot), None)


# --- a worker SIGKILLed in the middle of a stateful snapshot ------------------------------------


def test_a_worker_killed_during_a_stateful_snapshot_is_reconciled_with_the_truth(
    lab, fleet, celery_worker, admin_client
):
    host1 = lab["hosts"][0]
    with running_counter(lab, host1, "fault-snap") as name:
        # 100 MB of memory in the container makes the dump last long enough to be cut.
        print(f"\nmemory workload: {start_memory_churn(host1, name, megabytes=100):.0f} MiB")
        sync(fleet[0])
        instance = Instance.objects.get(host=fleet[0], name=name)
        boot = read_boot_id(host1, name)
        with doomed_worker("doomed-snapshot") as doomed:
            pk = ask(admin_client, instance, "stateful_snapshot", snapshot="cut")
            lxd_operation_started(pk)
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=30)
        operation = Operation.objects.get(pk=pk)
        assert operation.status == Operation.Status.RUNNING, "the worker ended it before dying"

        wait_for(lambda: not lxd_still_working(operation), timeout=120, what="LXD to finish")
        started = time.monotonic()
        assert reconcile(now=after_silence()) == [pk]
        print(f"reconciled in {time.monotonic() - started:.2f} s")
        operation.refresh_from_db()

        taken = snapshot_of(host1, name, "cut")  # the truth, from LXD
        assert taken is not None and taken["stateful"]
        assert operation.status == Operation.Status.SUCCEEDED, operation.outcome
        assert "Snapshot 'cut' exists" in operation.outcome
        assert f"{fleet[0].name}: RUNNING" in operation.outcome
        assert instance_status(host1, name) == "Running"
        assert read_boot_id(host1, name) == boot  # the container's processes were not touched
        page = admin_client.get(f"/operations/{pk}/").content.decode()
        assert escape(operation.outcome) in page and "Reconciled" in page


# --- Redis killed and restarted while operations are queued and running ---------------------


class RedisServer:
    """The test Redis, killed like a crash and started again with its own configuration
    (bin/test starts it with appendonly yes, as bin/panel does)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2)
        config = self.client.config_get("*")
        self.args = ["redis-server", "--daemonize", "yes"]
        for key in ("port", "bind", "dir", "pidfile", "logfile", "appendonly", "save"):
            if config.get(key) is not None:
                self.args += [f"--{key}", config[key]]

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        pid = self.client.info("server")["process_id"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, what="Redis to die")

    def start(self) -> None:
        subprocess.run(self.args, check=True, capture_output=True)
        wait_for(self.answers, timeout=30, what="Redis to answer again")


@pytest.fixture
def redis_server():
    server = RedisServer(settings.CELERY_BROKER_URL)
    assert server.answers()
    yield server
    if not server.answers():  # whatever the test did, the rest of the suite needs Redis
        server.start()


def test_redis_killed_and_restarted_loses_no_operation(
    lab, fleet, celery_worker, admin_client, redis_server
):
    """A live migration runs, a job waits in Redis, Redis is SIGKILLed; a job asked while
    it is down, and a sync button pressed, say so; Redis comes back. Every operation row is
    still there and every one ends with what LXD says happened."""
    host1 = lab["hosts"][0]
    with (
        running_counter(lab, host1, "fault-mig") as moving,
        running_counter(lab, host1, "fault-q") as waiting,
        running_counter(lab, host1, "fault-down") as asked_while_down,
    ):
        sync(fleet[0])
        instances = {i.name: i for i in Instance.objects.filter(host=fleet[0])}
        response = admin_client.post(
            f"/containers/{instances[moving].pk}/migrate/",
            {"target": fleet[1].pk, "strategy": "live"},
        )
        migration = int(response["Location"].split("/")[2])
        wait_for(
            lambda: len(Operation.objects.get(pk=migration).lxd_operation_ids) >= 2,
            timeout=60,
            what="the live migration to be under way",
        )
        with session_worker_paused():  # so that the next job stays in Redis
            in_redis = ask(admin_client, instances[waiting], "snapshot", snapshot="kept")
            time.sleep(1.5)  # Redis writes its append-only file every second
            redis_server.kill()
            killed_at = time.monotonic()

            down = ask(admin_client, instances[asked_while_down], "snapshot", snapshot="later")
            page = admin_client.get(f"/operations/{down}/").content.decode()
            assert "did not answer, so no worker has this yet. It stays queued" in page
            sync_page = admin_client.post(f"/hosts/{fleet[0].pk}/sync/")
            assert sync_page.status_code == 503
            assert "The job queue (Redis at 127.0.0.1:" in sync_page.content.decode()

            redis_server.start()
            print(f"\nRedis was down {time.monotonic() - killed_at:.1f} s")

        assert ended(migration).status == Operation.Status.SUCCEEDED
        assert ended(in_redis, timeout=60).status == Operation.Status.SUCCEEDED
        # The job Redis never had: the reconciler sends it once it has been silent too long.
        assert Operation.objects.get(pk=down).status == Operation.Status.PENDING
        started = time.monotonic()
        assert reconcile(now=after_silence()) == []  # sent again, not ended
        later = ended(down, timeout=60)
        print(f"the job asked while Redis was down ran {time.monotonic() - started:.1f} s "
              "after the reconciler sent it again")  # fmt: skip
        assert later.status == Operation.Status.SUCCEEDED, later.outcome

        ours = Operation.objects.filter(pk__in=[migration, in_redis, down])
        assert ours.count() == 3 and not ours.filter(status__in=Operation.ACTIVE).exists()
        assert instance_status(lab["hosts"][1], moving) == "Running"  # the truth, from LXD
        assert snapshot_of(host1, waiting, "kept") is not None
        assert snapshot_of(host1, asked_while_down, "later") is not None


# --- an LXD daemon killed during an operation -----------------------------------------------


def test_an_lxd_daemon_killed_during_an_operation_says_what_is_known_and_learns_the_rest(
    lab, lab_agents, fleet, celery_worker, admin_client
):
    """SIGKILL host1's LXD while it checkpoints and keep it down: the operation asks it again
    for the peer wait, then fails saying the state is unknown and why (never a guess); the
    host shows unreachable with LXD's error, and the automatic bundle completes, listing what
    it could not collect and why. Once LXD is back, the aftercare reads the container and
    writes its state on the operation and its row."""
    host1 = lab["hosts"][0]
    with running_counter(lab, host1, "fault-lxd") as name:
        print(f"\nmemory workload: {start_memory_churn(host1, name, megabytes=100):.0f} MiB")
        sync(fleet[0])
        instance = Instance.objects.get(host=fleet[0], name=name)
        pk = ask(admin_client, instance, "stateful_snapshot", snapshot="lost")
        lxd_operation_started(pk)
        kill_daemon(host1["name"])
        killed_at = time.monotonic()
        try:
            operation = ended(pk, timeout=180)
            print(f"the operation failed {time.monotonic() - killed_at:.1f} s after the kill")
            assert operation.status == Operation.Status.FAILED
            assert "host1's LXD stopped answering during the operation" in operation.outcome
            assert "so the container's state there is unknown" in operation.outcome
            assert host1["url"] in operation.error
            assert operation.container_state_after == "on host1, unknown (its LXD does not answer)"

            host = wait_for(
                lambda: Host.objects.filter(pk=fleet[0].pk, status=Host.Status.UNREACHABLE).first(),
                timeout=60,
                what="host1 to be shown unreachable",
            )
            page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
            assert "Unreachable" in page and escape(host.last_error) in page

            bundle = ready({"operation": operation}, timeout=120)
            by_name = check_manifest_accounts_for_everything(download(admin_client, bundle))
            for item in ("host1/lxc-info.yaml", f"host1/{name}/config-expanded.yaml",
                         f"host1/{name}/logs", f"host1/{name}/mountinfo.txt"):  # fmt: skip
                assert by_name[item]["status"] == "missing", by_name[item]
                assert host1["url"] in by_name[item]["reason"]
            assert by_name["host1/dmesg.txt"]["status"] == "collected"  # the agent still answers
            assert "missing" in bundle.report
        finally:
            restore_lab(settings.CELERY_BROKER_URL, agents=True)
        reconcile()  # LXD answers again: the aftercare writes what it finds
        operation.refresh_from_db()
        status = instance_status(host1, name)
        assert f"host1 answers again: the container is {status.upper()} there." in " ".join(
            operation.events.values_list("message", flat=True)
        )
        instance.refresh_from_db()
        assert instance.status == status  # described as LXD has it now
