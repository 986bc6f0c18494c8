"""bench/progress_pollers.py: the throwaway database, its rows, and what a poll costs in
process (django.test.Client, no HTTP): queries and time per request, and the parts of a poll.
Not run on its own."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

IN_PROCESS_RUNS = 300


def isolate() -> Path:
    """A fresh folder for the database, secret key and static files, shared with gunicorn
    through the environment; any PANEL_* variable of the caller is dropped."""
    folder = Path(tempfile.mkdtemp(prefix="panel-bench-pollers-"))
    for name in [name for name in os.environ if name.startswith("PANEL_")]:
        del os.environ[name]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "panel.settings",
            "PANEL_DATA_DIR": str(folder),
            "PANEL_DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "PANEL_DEBUG": "false",
            # 127.0.0.1 for gunicorn, testserver for django.test.Client in this process.
            "PANEL_ALLOWED_HOSTS": "127.0.0.1,testserver",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    configured = Path(settings.DATABASES["default"]["NAME"])
    if configured.parent != folder:
        raise RuntimeError(f"refusing to run: the database would be {configured}, not in {folder}")
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return folder


@dataclass
class Rows:
    users: dict  # persona -> User
    running_pk: int
    finished_pk: int


def seed() -> Rows:
    """An admin, an operator and a viewer; a host with LXD's full facts, a container, a running
    operation, a finished one, and 2,000 older operations so the table is not empty."""
    import datetime as dt

    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from panel.accounts.roles import OPERATORS_GROUP
    from panel.models import Host, Instance, Operation

    now = timezone.now()
    operator = User.objects.create_user("operator")
    operator.groups.add(Group.objects.get_or_create(name=OPERATORS_GROUP)[0])
    users = {
        "admin": User.objects.create_superuser("admin", "admin@localhost", None),
        "operator": operator,
        "viewer": User.objects.create_user("viewer"),
    }
    host = Host.objects.create(
        name="lxd01",
        endpoint="https://10.77.0.11:8443",
        status=Host.Status.ONLINE,
        server_version="5.0.2",
        facts={
            "server": "lxd",
            "server_version": "5.0.2",
            "driver": "lxc | qemu",
            "kernel_version": "6.1.0-28-amd64",
            "architectures": ["x86_64", "i686"],
            "storage": "zfs",
            # LXD 5.0.2 reports 318 API extensions; sync stores them all in Host.facts.
            "api_extensions": [f"api_extension_number_{i:03d}" for i in range(318)],
        },
        last_contact=now,
    )
    instance = Instance.objects.create(host=host, name="web-00001", status="Running")
    common = {"instance": instance, "instance_name": instance.name, "source_host": host,
              "requested_by": operator, "kind": Operation.Kind.STATEFUL_SNAPSHOT,
              "params": {"name": "snap0"}}  # fmt: skip
    Operation.objects.bulk_create(
        Operation(
            **common,
            status=Operation.Status.SUCCEEDED,
            stage="done",
            queued_at=now - dt.timedelta(hours=index + 1),
            started_at=now - dt.timedelta(hours=index + 1),
            finished_at=now - dt.timedelta(hours=index + 1) + dt.timedelta(seconds=40),
            outcome="Snapshot taken with the running state.",
        )
        for index in range(2000)
    )
    finished = Operation.objects.create(
        **common,
        status=Operation.Status.SUCCEEDED,
        stage="done",
        queued_at=now - dt.timedelta(minutes=3),
        started_at=now - dt.timedelta(minutes=3),
        finished_at=now - dt.timedelta(minutes=2),
        outcome="Snapshot snap0 taken with the container's running state (CRIU).",
    )
    running = Operation.objects.create(
        **common,
        status=Operation.Status.RUNNING,
        stage="checkpoint",
        progress_text="Dumping the container's memory: 412 MB of 1.0 GB",
        progress_fraction=0.4,
        lxd_operation_ids=["c3f1d2a4-0000-4000-8000-000000000001"],
        may_cancel=True,
        queued_at=now - dt.timedelta(seconds=43),
        started_at=now - dt.timedelta(seconds=42),
        heartbeat_at=now,
    )
    return Rows(users=users, running_pk=running.pk, finished_pk=finished.pk)


def progress_url(pk: int) -> str:
    from django.urls import reverse

    return reverse("operation-progress", kwargs={"pk": pk})


def median_ms(action) -> str:
    seconds = []
    for _ in range(IN_PROCESS_RUNS):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return f"{statistics.median(seconds) * 1000:.3f}"


def in_process(rows: Rows) -> tuple[list[tuple], list[str], list[tuple]]:
    """Queries and time per request through django.test.Client (no HTTP, no gunicorn), the
    SQL of the operator's poll, and what the parts of that poll cost on their own."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from panel.models import Operation

    targets = [
        ("progress, running", progress_url(rows.running_pk), 200),
        ("progress, finished", progress_url(rows.finished_pk), 286),
    ]
    table, operator_sql = [], []
    for persona, user in rows.users.items():
        client = Client(headers={"HX-Request": "true"})
        client.force_login(user)
        for label, url, expected in targets:
            client.get(url)  # the first request fills caches
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            # Read now: every request_started signal empties the connection's query log.
            sql = [query["sql"] for query in queries.captured_queries]
            timing = median_ms(lambda client=client, url=url: client.get(url))
            if persona == "operator" and expected == 200:
                operator_sql = sql
            status = str(response.status_code)
            if response.status_code != expected:
                status += f" (expected {expected})"
            table.append((persona, label, status, len(sql), f"{len(response.content)} B",
                          timing))  # fmt: skip
    operator_client = Client(headers={"HX-Request": "true"})
    operator_client.force_login(rows.users["operator"])
    url = progress_url(rows.running_pk)
    operator_client.get(url)

    def poll_on_new_connection() -> None:
        connection.close()  # what CONN_MAX_AGE=0 would do at the end of every request
        operator_client.get(url)

    table.append(("operator", "progress, running, a new SQLite connection each (not done)",
                  "200", len(operator_sql), "", median_ms(poll_on_new_connection)))  # fmt: skip
    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz")
    count = len(queries)
    timing = median_ms(lambda: client.get("/healthz"))
    table.append(("anonymous", "healthz", str(response.status_code), count,
                  f"{len(response.content)} B", timing))  # fmt: skip

    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore as DjangoSessions

    from panel.accounts.backends import PanelBackend
    from panel.accounts.sessions import SessionStore
    from panel.rows import row_by_pk
    from panel.web.progress_card import progress_card
    from panel.web.views.operations import PROGRESS_UNREAD

    key, pk = operator_client.cookies["sessionid"].value, rows.running_pk
    operator = rows.users["operator"]
    operation = row_by_pk(Operation, pk, PROGRESS_UNREAD)

    def orm_user() -> None:
        user = User.objects.get(pk=operator.pk)
        user.groups.filter(name="operators").exists()

    parts = [
        ("session, Django's store (the ORM builds the SELECT)",
         median_ms(lambda: DjangoSessions(key).load())),
        ("session, panel.accounts.sessions (one prepared statement)",
         median_ms(lambda: SessionStore(key).load())),
        ("user, then its operators group: two ORM queries", median_ms(orm_user)),
        ("user with its role: PanelBackend.get_user, one prepared statement",
         median_ms(lambda: PanelBackend().get_user(operator.pk))),
        ("operation, Operation.objects.get(pk=...)",
         median_ms(lambda: Operation.objects.get(pk=pk))),
        ("operation without its result: row_by_pk, one prepared statement",
         median_ms(lambda: row_by_pk(Operation, pk, PROGRESS_UNREAD))),
        ("the card, built (panel/web/progress_card.py)",
         median_ms(lambda: progress_card(operation, can_operate=True))),
        *django_handler_parts(url, operator_client.cookies),
    ]  # fmt: skip
    connection.close()
    return table, operator_sql, parts


# What a poll's answer depends on; the rest of MIDDLEWARE does nothing for a GET of the
# fragment but still runs (static files, slashes, CSRF, messages, audit, NUL screening, the
# queue, django-axes, /healthz).
POLL_NEEDS = (
    "SecurityMiddleware",
    "SessionMiddleware",
    "AuthenticationMiddleware",
    "XFrameOptionsMiddleware",
    "ContentSecurityPolicyMiddleware",
    "HtmxMiddleware",
)


def django_handler_parts(url: str, cookies) -> list[tuple[str, str]]:
    """Whole requests through Django's WSGI handler, without HTTP or the test client: the
    poll, the poll with only the middleware it needs (how much of the floor the middleware
    is), and /healthz. For the reading of the floor in docs/benchmarks.md."""
    import io

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())

    def requester(handler: WSGIHandler, path: str, cookie: str):
        def request() -> None:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
                       "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
                       "HTTP_HX_REQUEST": "true", "HTTP_COOKIE": cookie, "REMOTE_ADDR": "127.0.0.1",
                       "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                       "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO()}  # fmt: skip
            body = handler(environ, lambda status, headers: None)
            b"".join(body)
            body.close()

        return request

    whole = WSGIHandler()
    lean = [name for name in settings.MIDDLEWARE if name.rsplit(".", 1)[1] in POLL_NEEDS]
    with override_settings(MIDDLEWARE=lean):
        needed_only = WSGIHandler()
    return [
        ("a whole poll through Django's handler, every middleware (no HTTP)",
         median_ms(requester(whole, url, cookie))),
        (f"the same with only the {len(lean)} middleware its answer needs",
         median_ms(requester(needed_only, url, cookie))),
        ("/healthz through Django's handler", median_ms(requester(whole, "/healthz", ""))),
    ]  # fmt: skip
