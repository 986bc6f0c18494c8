"""Fixtures shared by the whole suite: personas, a real Celery worker, the lab."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from celery.signals import before_task_publish
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from panel import lxd
from panel.hosts.identity import client_cert_files
from tests.helpers import child_database_url
from tests.lab_tools import enroll, untrust_certificate
from workers.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failure: it proves nothing, and the lab must really run."""
    if not IN_CI or call.when != "setup" or call.excinfo is None:
        return None
    if call.excinfo.errisinstance(pytest.skip.Exception) and not item.get_closest_marker("xfail"):
        report = pytest.TestReport.from_item_and_call(item, call)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {call.excinfo.value}"
        return report
    return None


@pytest.fixture(scope="session", autouse=True)
def collected_static_files() -> None:
    """Templates use the manifest storage that production uses, so collect once per run."""
    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="s3cret-pass-word")


@pytest.fixture
def viewer_user(django_user_model):
    return django_user_model.objects.create_user("vic", password="s3cret-pass-word")


def logged_in_client(user) -> Client:
    """A separate browser per persona, so two personas in one test never share a session."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user):
    return logged_in_client(admin_user)


@pytest.fixture
def viewer_client(viewer_user):
    return logged_in_client(viewer_user)


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; return its value, or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


# The session's worker, by name: the lab's agents are Celery workers on the same broker,
# so a test that pauses "the worker" must say which one.
SESSION_WORKER = f"test-{os.getpid()}@localhost"


def start_celery_worker(name: str) -> subprocess.Popen:
    """A real worker process on the test Redis and the test database, in its own process
    group (so a fault test can kill it, pool children included, like a crash would);
    returned once it answers a ping."""
    env = {**os.environ, "PANEL_DATABASE_URL": child_database_url()}
    log_path = Path(settings.DATA_DIR) / "log" / f"{name.split('@')[0]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "panel",
             "--hostname", name, "--concurrency", "4", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            lambda: celery_app.control.ping(destination=[name], timeout=0.5),
            timeout=60,
            what=f"the Celery worker {name} to answer (log: {log_path})",
        )
    except BaseException:  # pytest.fail raises an exception outside Exception
        os.killpg(worker.pid, signal.SIGKILL)
        raise
    return worker


@contextlib.contextmanager
def session_worker_paused():
    """The session worker takes no new jobs inside the block (what it runs carries on)."""
    celery_app.control.cancel_consumer("panel", destination=[SESSION_WORKER], reply=True)
    try:
        yield
    finally:
        # Broadcasts are not queued: after a broker restart, ask until the worker, back on
        # the broker, says it took the queue again, or the rest of the suite would starve.
        wait_for(
            lambda: celery_app.control.add_consumer(
                "panel", destination=[SESSION_WORKER], reply=True, timeout=1
            ),
            timeout=90,
            interval=0.5,
            what="the session worker to take jobs again",
        )


# Jobs a test sent (on commit, so only transactional tests send any). The session worker
# runs them after the test has ended, and on PostgreSQL its writes then deadlock against the
# TRUNCATE that empties the database for the next test: settle them first.
SENT_JOBS: list[str] = []


@before_task_publish.connect(weak=False)
def _note_sent_job(sender=None, **_kwargs) -> None:
    SENT_JOBS.append(str(sender))


def session_worker_busy() -> list[str]:
    """What the session worker has not finished, queued jobs included; [] when it is idle
    or not running (nothing would run the queue before the next worker purges it)."""
    inspect = celery_app.control.inspect(destination=[SESSION_WORKER], timeout=1, limit=1)
    active = inspect.active()
    if active is None:  # no answer within the second
        return []
    answers = [active, inspect.reserved(), inspect.scheduled()]
    busy = [job.get("name") or job.get("request", {}).get("name", "?")
            for answer in answers for jobs in (answer or {}).values() for job in jobs]  # fmt: skip
    with celery_app.connection_for_read() as connection:
        queued = connection.default_channel.client.llen(settings.CELERY_TASK_DEFAULT_QUEUE)
    return busy + ["queued"] * queued


def is_transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction")) or "live_server" in item.fixturenames


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After a transactional test that sent jobs, wait (up to a minute) until the session
    worker has run them, before the database is emptied under it."""
    SENT_JOBS.clear()
    yield
    if not SENT_JOBS or not is_transactional(item):
        return
    deadline, busy = time.monotonic() + 60, None
    with contextlib.suppress(Exception):  # a test that stopped the broker: nothing to settle
        while (busy := session_worker_busy()) and time.monotonic() < deadline:
            time.sleep(0.2)
    if busy:
        item.warn(pytest.PytestWarning(f"the session worker was still busy with {busy}"))


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


@contextlib.contextmanager
def doomed_worker(label: str):
    """Hand the panel's jobs to a fresh worker a fault test may kill, the session worker
    paused meanwhile (the doomed worker is killed on the way out if the test did not)."""
    with session_worker_paused():
        worker = start_celery_worker(f"{label}-{os.getpid()}@localhost")
        try:
            yield worker
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on the test Redis, writing to the test database.

    Tests that use it need `@pytest.mark.django_db(transaction=True)` so the rows they
    create are committed where the worker can see them.
    """
    try:
        celery_app.connection().ensure_connection(max_retries=1)
    except Exception as error:
        pytest.fail(
            f"Redis at {settings.CELERY_BROKER_URL} is not answering ({error}): use bin/test"
        )
    celery_app.control.purge()
    worker = start_celery_worker(SESSION_WORKER)
    try:
        yield worker
    finally:
        stop_process(worker, timeout=30)


@pytest.fixture(scope="session")
def lab() -> dict:
    """The lab's state file (hosts, addresses, trust passwords), or a clear failure."""
    state_file = Path(os.environ.get("PANEL_LAB_STATE", ROOT / "var" / "lab" / "state.json"))
    if not state_file.exists():
        message = f"the lab is not up ({state_file} missing): run `python3 lab/lab.py up` as root"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(state_file.read_text())


@pytest.fixture
def fleet(lab) -> tuple:
    """The lab's host1 and host2, enrolled in the panel over HTTPS."""
    return enroll(lab["hosts"][0]), enroll(lab["hosts"][1])


@pytest.fixture(scope="session")
def incus_lab(lab) -> list[dict]:
    """The lab's Incus hosts incus1 and incus2 (`lab.py up --incus 2`, as bin/test runs)."""
    hosts = lab.get("incus_hosts") or []
    if len(hosts) < 2:
        message = f"{len(hosts)} Incus hosts in the lab: run `python3 lab/lab.py up --incus 2`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return hosts


@pytest.fixture
def incus_fleet(incus_lab) -> tuple:
    """The lab's incus1 and incus2, enrolled in the panel over HTTPS with trust tokens."""
    return enroll(incus_lab[0]), enroll(incus_lab[1])


@pytest.fixture
def operator_user(django_user_model):
    from django.contrib.auth.models import Group

    from panel.accounts.roles import OPERATORS_GROUP

    user = django_user_model.objects.create_user("otto", password="s3cret-pass-word")
    user.groups.add(Group.objects.get_or_create(name=OPERATORS_GROUP)[0])
    return user


@pytest.fixture
def operator_client(operator_user):
    return logged_in_client(operator_user)


def agent_answers(queue: str) -> bool:
    from panel.hosts.agent_access import reply_id
    from workers.agent import probe_task

    try:
        pending = probe_task.apply_async(queue=queue, task_id=reply_id(queue), expires=5)
        return bool(pending.get(timeout=5))
    except Exception:  # not consuming yet: the caller waits and asks again
        return False


LAB_PY = str(ROOT / "lab" / "lab.py")


def start_lab_agents(lab: dict) -> None:
    """Start the agent on every LXD lab host and wait until each answers."""
    from panel.hosts.agent_access import queue_for
    from panel.lxd import certificate_fingerprint

    subprocess.run(
        ["python3", LAB_PY, "agents", "start", "--python", sys.executable,
         "--redis-url", settings.CELERY_BROKER_URL],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    for lab_host in lab["hosts"]:
        pem = (Path(lab_host["lxd_dir"]) / "server.crt").read_text()
        queue = queue_for(certificate_fingerprint(pem))
        wait_for(lambda q=queue: agent_answers(q), timeout=60, interval=1,
                 what=f"the agent on {lab_host['name']} ({queue})")  # fmt: skip


def stop_lab_agents() -> None:
    subprocess.run(["python3", LAB_PY, "agents", "stop"], check=False, capture_output=True)


AGENTS_STARTED: list[bool] = []  # set by lab_agents for the rest of the session


@pytest.fixture(scope="session")
def lab_agents(lab) -> dict:
    """The panel's agent on every lab host, consuming from the test Redis as on real hosts
    (lab.py starts each in its host's mount namespace); stopped at the end of the session."""
    start_lab_agents(lab)
    AGENTS_STARTED.append(True)
    try:
        yield lab
    finally:
        AGENTS_STARTED.clear()
        stop_lab_agents()


@pytest.fixture
def without_agents(lab) -> dict:
    """No agent on any lab host for this test, whatever ran before it (lab_agents lasts the
    session): a test that needs CRIU itself to fail must not have an agent's failing `criu
    check` make the panel (rightly) refuse the checkpoint first. Restarted afterwards if the
    session had them."""
    stop_lab_agents()
    try:
        yield lab
    finally:
        if AGENTS_STARTED:
            start_lab_agents(lab)


@pytest.fixture(scope="session")
def incus_agents(incus_lab) -> list[dict]:
    """The panel's agent on each Incus host (PANEL_AGENT_LAYOUT=incus), as `lab_agents`."""
    from panel.hosts.agent_access import queue_for
    from panel.lxd import certificate_fingerprint

    lab_py = str(ROOT / "lab" / "lab.py")
    only = [arg for lab_host in incus_lab for arg in ("--host", lab_host["name"])]
    subprocess.run(
        ["python3", lab_py, "agents", "start", *only, "--python", sys.executable,
         "--redis-url", settings.CELERY_BROKER_URL],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    try:
        for lab_host in incus_lab:
            queue = queue_for(certificate_fingerprint(Path(lab_host["server_cert"]).read_text()))
            wait_for(lambda q=queue: agent_answers(q), timeout=60, interval=1,
                     what=f"the agent on {lab_host['name']} ({queue})")  # fmt: skip
        yield incus_lab
    finally:
        subprocess.run(["python3", lab_py, "agents", "stop", *only], check=False,
                       capture_output=True)  # fmt: skip


@pytest.fixture(autouse=True)
def one_identity_per_data_folder(request):
    """Every lab test sees the same panel identity, kept for the data folder as an install
    keeps its own: flushing the database between tests would otherwise give each test a new
    certificate, and the shared lab hosts would trust one more of them every time."""
    database = request.node.get_closest_marker("django_db")
    if request.node.get_closest_marker("lab") is None or database is None:
        return
    request.getfixturevalue("transactional_db" if database.kwargs.get("transaction") else "db")
    from panel.hosts.identity import IDENTITY_NAME, seal_key
    from panel.models import ClientIdentity

    cert_path, key_path = lxd.ensure_client_certificate(Path(settings.DATA_DIR) / "test-identity")
    cert_pem = Path(cert_path).read_text()
    if not ClientIdentity.objects.filter(name=IDENTITY_NAME).exists():
        ClientIdentity.objects.create(
            name=IDENTITY_NAME,
            certificate=cert_pem,
            sealed_key=seal_key(Path(key_path).read_text()),
            fingerprint=lxd.certificate_fingerprint(cert_pem),
        )


@pytest.fixture
def untrusted_panel(lab):
    """The panel's client certificate starts and ends untrusted on every lab host, so each
    test sees a first contact, as an admin adding a new host does."""
    cert_path, _ = client_cert_files()
    for lab_host in lab["hosts"]:
        untrust_certificate(lab_host, cert_path)
    yield
    for lab_host in lab["hosts"]:
        untrust_certificate(lab_host, cert_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own server)
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def panel_url(django_db_setup, django_db_blocker) -> str:
    """gunicorn serving the panel on a free port, writing to the test database as the worker does.

    Tests that use it need `@pytest.mark.django_db(transaction=True)` so what they create is
    committed where the server can read it.
    """
    port = free_port()
    env = {**os.environ, "PANEL_ALLOWED_HOSTS": "127.0.0.1"}
    env["PANEL_DATABASE_URL"] = child_database_url()
    log_path = Path(settings.DATA_DIR) / "log" / "test-gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(gunicorn), "panel.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4", "--access-logfile", "-"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/healthz"), timeout=30, interval=0.3,
                 what=f"gunicorn to answer on {url} (log: {log_path})")  # fmt: skip
        yield url
    finally:
        stop_process(server, timeout=20)
