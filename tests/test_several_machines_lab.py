"""The panel on several machines, played by real processes on this one: a web server, two
workers and beat, each with a data folder of its own, sharing only PostgreSQL (the suite's
test database) and Redis. Worker A live-migrates a container and goes away; worker B, which
never saw A's folder, runs a checkpoint that fails and builds its bundle; the web serves it
from the database. Every process acts as the one enrolled LXD client, and no client key lies
in any folder."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client

from panel.hosts.inventory import sync
from panel.models import Bundle, ClientIdentity, Instance, Operation, StoredFile
from tests.conftest import ROOT, answers, free_port, stop_process, wait_for
from tests.helpers import child_database_url
from tests.lab_tools import enroll, running_counter, set_criu

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]
CELERY = [sys.executable, "-m", "celery", "-A", "workers"]


class Machine:
    """One process with its own data folder, as if on a machine of its own."""

    def __init__(self, name: str, root: Path, argv: list[str], extra: dict | None = None):
        self.name, self.folder = name, root / name
        self.folder.mkdir()
        env = {**os.environ, **(extra or {}),
               "PANEL_DATA_DIR": str(self.folder), "PANEL_DATABASE_URL": child_database_url(),
               # database 8 of the suite's Redis: the session worker never takes these jobs
               "PANEL_REDIS_URL": settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/8",
               "PANEL_SECRET_KEY": settings.SECRET_KEY, "PANEL_FILE_STORAGE": "database",
               "PANEL_STATIC_ROOT": str(settings.STATIC_ROOT)}  # fmt: skip
        self.log = self.folder / "process.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)  # fmt: skip

    def said(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_process(self.process, timeout=30)


def worker(name: str, root: Path) -> Machine:
    return Machine(name, root, [*CELERY, "worker", "-Q", "panel", "--hostname",
                                f"{name}@multi", "--concurrency", "2", "--loglevel", "INFO",
                                "--without-gossip",
                                "--without-mingle"])  # fmt: skip


class Browser:
    """A signed-in admin's browser on the web machine (a session row in the shared database)."""

    def __init__(self, base: str, user) -> None:
        self.base, self.http = base, requests.Session()
        self.http.trust_env = False
        signed_in = Client()
        signed_in.force_login(user)
        self.http.cookies.set("sessionid", signed_in.cookies["sessionid"].value)
        self.http.get(f"{base}/", timeout=10)  # sets the CSRF cookie

    def post(self, path: str, data: dict) -> str:
        response = self.http.post(
            f"{self.base}{path}", data=data, allow_redirects=False, timeout=30,
            headers={"X-CSRFToken": self.http.cookies["csrftoken"]},
        )  # fmt: skip
        assert response.status_code == 302, response.text[:500]
        return response.headers["Location"]

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.base}{path}", timeout=30)


def ended(pk: int, timeout: float = 300) -> Operation:
    return wait_for(
        lambda: Operation.objects.exclude(status__in=Operation.ACTIVE).filter(pk=pk).first(),
        timeout=timeout, what=f"operation #{pk}",
    )  # fmt: skip


def operation_id(location: str) -> int:
    assert location.startswith("/operations/"), location
    return int(location.split("/")[2])


def test_web_two_workers_and_beat_on_their_own_folders_share_one_identity_and_the_bundles(
    lab, admin_user, tmp_path
):
    host1, host2 = enroll(lab["hosts"][0]), enroll(lab["hosts"][1])
    port = free_port()
    machines = [
        Machine("web", tmp_path, [str(Path(sys.executable).parent / "gunicorn"), "panel.wsgi",
                                  "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                {"PANEL_ALLOWED_HOSTS": "127.0.0.1"}),
        Machine("beat", tmp_path, [*CELERY, "beat", "--schedule", str(tmp_path / "beat" / "s")]),
    ]  # fmt: skip
    try:
        a = worker("worker-a", tmp_path)
        machines.append(a)
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz") and a.said("ready."),
                 timeout=60, what="the web and worker A")  # fmt: skip
        browser = Browser(f"http://127.0.0.1:{port}", admin_user)
        with running_counter(lab, lab["hosts"][0], "multi", at_least=2) as name:
            sync(host1)
            instance = Instance.objects.get(host=host1, name=name)
            form = {"target": host2.pk, "strategy": "live"}
            ended(operation_id(browser.post(f"/containers/{instance.pk}/migrate/check/", form)))
            moved = ended(operation_id(browser.post(f"/containers/{instance.pk}/migrate/", form)))
            assert moved.status == Operation.Status.SUCCEEDED, (moved.outcome, moved.error)
            assert a.said("Task panel.operations.tasks.run_migration_operation[")

            # Worker A goes away with its folder; worker B starts from nothing but the
            # settings every machine shares.
            a.stop()
            b = worker("worker-b", tmp_path)
            machines.append(b)
            wait_for(lambda: b.said("ready."), timeout=60, what="worker B")
            sync(host2)
            instance = Instance.objects.get(host=host2, name=name, gone_at=None)
            set_criu(lab["hosts"][1], "stock")  # Debian 12's CRIU: the dump fails for real
            location = browser.post(
                f"/containers/{instance.pk}/operations/",
                {"kind": "stateful_snapshot", "snapshot": "broken"},
            )
            failing = operation_id(location)
            failed = ended(failing)
            assert failed.status == Operation.Status.FAILED
            bundle = wait_for(
                lambda: Bundle.objects.filter(operation=failed, status="ready").first(),
                timeout=180, what="worker B to build the bundle",
            )  # fmt: skip
            built = "Task panel.bundles.tasks.collect_operation_bundle["
            assert b.said(built) and not a.said(built)

        download = browser.get(f"/bundles/{bundle.pk}/download/")
        assert download.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
            names = tar.getnames()
        assert names[0].endswith("/report.md") and names[1].endswith("/manifest.json")
        assert any("snapshot_dump_" in n for n in names), names  # CRIU's log, via LXD
        assert StoredFile.objects.filter(name=bundle.file.name).exists()
        assert machines[1].process.poll() is None, "beat stopped"
        assert ClientIdentity.objects.count() == 1
        for machine in machines:
            assert not list(machine.folder.rglob("client.key")), machine.name
            assert not (machine.folder / "files").exists(), f"{machine.name} kept a file"
    finally:
        for machine in machines:
            machine.stop()
        set_criu(lab["hosts"][1], "fixed")
