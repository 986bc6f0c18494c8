"""Benchmark: the operation progress endpoint under 100 concurrent pollers, served by gunicorn.

Target (from the issue): the progress endpoint under 100 concurrent pollers served by
gunicorn: requests per second and p99 latency.

    .venv/bin/python bench/progress_pollers.py [--rounds 5] [--duration 6] [--only-default]

GET /operations/<pk>/progress/ with `HX-Request: true` is what htmx polls once a second on the
operation page. This benchmark seeds a throwaway SQLite database (never var/panel.sqlite3),
logs an operator in by creating a session row, starts gunicorn for real (`panel.wsgi`, bound
to 127.0.0.1 on a free port, logging like bin/panel does) with the same PANEL_* environment,
and drives it with `wrk` (the Debian package; installed with apt-get when missing and run as
root). For each gunicorn configuration it measures, with the same wrk settings:

- the progress of a RUNNING operation (200, the fragment with the cancel form),
- the progress of a finished operation (286, which tells htmx to stop polling),
- GET /healthz (one `SELECT 1`, no session, no template) as the baseline the figures are read
  against: the ratio says how much the session, the user, the row and the template cost.

Beside bin/panel's configuration runs its floor (progress_pollers_floor.py): the same server
with the fragment not rendered, everything else a poll does kept. Read side by side, the
floor says what is the template's and what is the price of any signed-in Django request.

wrk's closed loop keeps all connections busy, so its latency is mostly queueing. A last,
paced run per configuration shows the latency a real page sees: 100 pollers in this process
(asyncio), each polling once a second like htmx's `every 1s`, at random phases, sending its
request as soon as its connection is open and reusing it when gunicorn keeps it alive, as a
browser does. (wrk's own `delay()` is not used for that: wrk opens the next connection first
and then waits, and an idle open connection holds a sync worker until its request comes.)
A wrk Lua script counts every status code: a redirect to the login page (a lost session) is a
3xx that wrk would not report as an error.

In the same process, django.test.Client counts the SQL queries of each request per persona.
Prints figures; asserts nothing about them. Traffic goes only to 127.0.0.1; no LXD is needed.

Beside it: progress_pollers_db.py (the database, its rows, the in-process figures),
progress_pollers_server.py (gunicorn, wrk, the pre-flight) and progress_pollers_load.py (the
wrk runs and the paced pollers).
"""

from __future__ import annotations

import argparse
import os
import statistics

import _common
from progress_pollers_db import IN_PROCESS_RUNS, in_process, isolate, progress_url, seed
from progress_pollers_load import (
    MARKER,
    WRK_SCRIPT,
    WRK_THREADS,
    WRK_TIMEOUT,
    Run,
    measure,
    paced_pollers,
    run_wrk,
)
from progress_pollers_server import Gunicorn, ensure_wrk, gunicorn_binary, preflight, version

POLLERS = 100  # the 100 pollers, each asking once a second: 100 requests per second
WARMUP_SECONDS = 2

DEFAULT = ("sync, 2 workers (bin/panel default)", ["--workers", "2"])
# The same, with the fragment not rendered (progress_pollers_floor.py): side by side, it shows
# what is the template's and what is any signed-in Django request's.
FLOOR_SETTINGS = str(_common.ROOT / "bench" / "progress_pollers_floor.py")
FLOOR = ("sync, 2 workers, fragment not rendered (floor)", ["--workers", "2", "-c", FLOOR_SETTINGS])
CONFIGURATIONS = [
    DEFAULT,
    FLOOR,
    ("sync, 4 workers", ["--workers", "4"]),
    ("gthread, 2 workers x 4 threads", ["--workers", "2", "--worker-class", "gthread",
                                        "--threads", "4"]),
]  # fmt: skip


def ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f}"


def statuses_text(run: Run) -> str:
    text = ", ".join(f"{status}x{count}" for status, count in sorted(run.statuses.items()))
    return text + (f" ({run.unexpected} UNEXPECTED)" if run.unexpected else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="wrk runs per endpoint, in alternation (other load hits all alike)",
    )
    parser.add_argument("--paced-seconds", type=int, default=15, help="the paced pollers' run")
    parser.add_argument("--connections", type=int, default=POLLERS)
    parser.add_argument(
        "--only-default",
        action="store_true",
        help="only bin/panel's configuration (2 sync) and its floor",
    )
    arguments = parser.parse_args()
    configurations = [DEFAULT, FLOOR] if arguments.only_default else CONFIGURATIONS
    wrk = ensure_wrk()

    _common.progress("preparing a throwaway database and static files")
    folder = isolate()
    runs: list[Run] = []
    paced: list[Run] = []
    logged_errors: dict[str, int] = {}
    try:
        rows = seed()
        _common.progress("counting queries in process")
        queries, operator_sql, parts = in_process(rows)

        from django.test import Client

        client = Client(headers={"HX-Request": "true"})
        client.force_login(rows.users["operator"])
        # The operation's page sets the CSRF cookie a browser then sends with every poll.
        from django.urls import reverse

        client.get(reverse("operation-detail", kwargs={"pk": rows.running_pk}))
        cookie = "; ".join(f"{name}={client.cookies[name].value}"
                           for name in ("sessionid", "csrftoken"))  # fmt: skip
        from django.db import connection

        connection.close()

        polling = [f"Cookie: {cookie}", "HX-Request: true"]
        targets = [
            ("progress, running", progress_url(rows.running_pk), polling, 200),
            ("progress, finished", progress_url(rows.finished_pk), polling, 286),
            ("healthz (baseline)", "/healthz", [], 200),
        ]
        script = folder / "count-statuses.lua"
        script.write_text(WRK_SCRIPT % {"marker": MARKER})

        for number, (configuration, extra) in enumerate(configurations):
            _common.progress(f"starting gunicorn: {configuration}")
            server = Gunicorn(folder, str(number), extra)
            try:
                server.wait_healthy()
                preflight(server, targets)
                run_wrk(wrk, script, server.base() + targets[0][1], polling,
                        WARMUP_SECONDS, arguments.connections)  # fmt: skip
                for number in range(1, arguments.rounds + 1):
                    for endpoint, path, headers, expected in targets:
                        run = measure(server, wrk, script, configuration, endpoint, path,
                                      headers, expected, arguments.duration,
                                      arguments.connections)  # fmt: skip
                        run.round = number
                        runs.append(run)
                paced.append(paced_pollers(server, configuration, targets[0][1], cookie,
                                           arguments.connections,
                                           arguments.paced_seconds))  # fmt: skip
            finally:
                server.stop()
                logged_errors[configuration] = server.errors_logged()
    finally:
        _common.discard(folder)

    report(arguments, configurations, runs, paced, queries, operator_sql, parts, logged_errors)


def report(
    arguments, configurations, runs: list[Run], paced: list[Run], queries: list[tuple],
    operator_sql: list[str], parts: list[tuple], logged_errors: dict[str, int],
) -> None:  # fmt: skip
    _common.print_table(
        ["machine", ""],
        [
            *_common.machine(),
            ("gunicorn", version([gunicorn_binary(), "--version"])),
            ("wrk", version(["wrk", "--version"])),
        ],
    )
    print(
        f"wrk -t{WRK_THREADS} -c{arguments.connections} -d{arguments.duration}s --timeout "
        f"{WRK_TIMEOUT} against gunicorn on 127.0.0.1 (same machine: wrk takes CPU from the "
        f"server); session of an operator (in the operators group), HX-Request: true, with the "
        f"CSRF cookie a browser holds. Latency in ms. Headroom = rps / {POLLERS} "
        f"(the rate {POLLERS} pollers need at one poll per second).\n"
    )
    baseline = {(run.configuration, run.round): run.rps for run in runs
                if run.endpoint.startswith("healthz")}  # fmt: skip
    _common.print_table(
        ["configuration", "round", "endpoint", "rps", "p50", "p90", "p99", "max", "non-2xx/3xx",
         "socket err", "statuses", "server CPU ms/req", "wrk CPU %", "other CPU %",
         "vs healthz", "headroom"],
        [
            (
                run.configuration, run.round, run.endpoint, f"{run.rps:.0f}",
                ms(run.latency_us["p50"]),
                ms(run.latency_us["p90"]), ms(run.latency_us["p99"]), ms(run.latency_us["max"]),
                run.non_2xx_3xx, run.socket_errors, statuses_text(run),
                f"{run.server_cpu * 1000 / max(run.requests, 1):.2f}",
                f"{run.client_cpu / run.seconds * 100:.0f}", f"{run.other_cpu_percent:.0f}",
                "" if run.endpoint.startswith("healthz")
                else f"{run.rps / baseline[run.configuration, run.round]:.2f}",
                "" if run.endpoint.startswith("healthz") else f"x{run.rps / POLLERS:.1f}",
            )
            for run in runs
        ],
    )  # fmt: skip
    summary = []
    for configuration, _ in configurations:
        for endpoint in dict.fromkeys(r.endpoint for r in runs if not r.endpoint.startswith("h")):
            mine = [r for r in runs if r.configuration == configuration and r.endpoint == endpoint]
            ratios = [r.rps / baseline[configuration, r.round] for r in mine]
            cpu = [r.server_cpu * 1000 / max(r.requests, 1) for r in mine]
            health = [
                r.server_cpu * 1000 / max(r.requests, 1)
                for r in runs
                if r.configuration == configuration and r.endpoint.startswith("healthz")
            ]
            summary.append(
                (
                    configuration,
                    endpoint,
                    " ".join(f"{x:.2f}" for x in ratios),
                    f"{statistics.median(ratios):.2f}",
                    f"{statistics.median(cpu):.2f} / {statistics.median(health):.2f}",
                    "PASS" if statistics.median(ratios) >= 0.5 else "FAIL",
                )
            )
    print(
        "rps / healthz's rps in the same round (the endpoints ran in alternation, so other "
        "load on the machine hits each alike); target: median at least 0.5\n"
    )
    _common.print_table(
        ["configuration", "endpoint", "per round", "median", "server CPU ms/req (vs healthz)",
         "≥ 0.5"], summary,
    )  # fmt: skip
    disturbed = [run for run in [*runs, *paced] if run.other_cpu_percent > 10]
    if disturbed:
        print(f"WARNING: other processes took more than 10% of the CPU during {len(disturbed)} "
              "run(s) (column 'other CPU %'): those figures are low; rerun on a quiet "
              "machine. 'server CPU ms/req' is the figure least affected.\n")  # fmt: skip
    print(f"The realistic load: {arguments.connections} pollers, each polling the running "
          "operation once a second at a random phase (as htmx's `every 1s` on open pages), "
          f"for {arguments.paced_seconds} s. Latency includes the TCP connect when gunicorn "
          "closed the connection (sync workers always do).\n")  # fmt: skip
    _common.print_table(
        ["configuration", "rps", "p50", "p75", "p90", "p99", "max", "statuses",
         "server CPU ms/req", "server busy (% of all cores)", "other CPU %"],
        [(run.configuration, f"{run.rps:.0f}", ms(run.latency_us["p50"]),
          ms(run.latency_us["p75"]), ms(run.latency_us["p90"]), ms(run.latency_us["p99"]),
          ms(run.latency_us["max"]), statuses_text(run),
          f"{run.server_cpu * 1000 / max(run.requests, 1):.2f}",
          f"{run.server_cpu / run.seconds / (os.cpu_count() or 1) * 100:.0f}",
          f"{run.other_cpu_percent:.0f}") for run in paced],
    )  # fmt: skip
    _common.print_table(
        ["gunicorn configuration", "errors in its error log"],
        [(configuration, logged_errors.get(configuration, "?")) for configuration, _ in
         configurations],
    )  # fmt: skip
    print(f"In process (django.test.Client, no HTTP): median of {IN_PROCESS_RUNS} requests.\n")
    _common.print_table(
        ["persona", "endpoint", "status", "SQL queries", "body", "median ms"], queries
    )
    print("The SQL of one poll of the running operation by the operator:\n")
    for number, sql in enumerate(operator_sql, 1):
        print(f"{number}. {sql if len(sql) <= 300 else sql[:300] + ' ...'}")
    print()
    _common.print_table(["part of a poll, in process", "median ms"], parts)


if __name__ == "__main__":
    main()
