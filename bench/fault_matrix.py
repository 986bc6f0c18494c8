"""The fault matrix (issue 15): every fault at every phase, for both CRIU strategies and the
stateful one-host operations, on the lab's real hosts; a table of how each case ended.

Run (lab up, as root; each slice holds the lab for minutes, so run it in slices):
    .venv/bin/python bench/fault_matrix.py --faults "kill target" --strategies live
    .venv/bin/python bench/fault_matrix.py --list    # the cases, without running them

Faults: kill target (SIGKILL the target's LXD, back after 15 s), kill source (the source's,
likewise), cut link (the target's veth down for 45 s, past the peer wait), kill worker
(SIGKILL the Celery worker's process group; the reconciler ends the operation once the silence
threshold has passed), restart Redis (SIGKILL, back after 2 s). For one-host operations the
host's own LXD and link take the "target" and "source" faults' place.

For every case, from the hosts themselves (`lxc`, /proc): the operation's status and its time
from the fault to terminal; where the container ended and whether its processes continued
(the counter image's boot id unchanged); for a killed daemon, whether the container was still
alive with the same processes on that host right before the lab brought the daemon back (the
lab's `up` kills what a dead daemon left, its containers too, where a real host's restarted LXD
leaves them running); copies left on the other host after the aftercare ran;
whether CRIU still holds it (frozen) and whether two copies run (duplicate); the automatic
bundle (both hosts' items, every missing one with its reason). The summary gives N cases,
how many ended within the bound, frozen, lost and duplicated containers.

The panel side is real: a throwaway database, a Redis of its own (append-only, as bin/panel),
one Celery worker, the lab's agents on that Redis, both hosts enrolled over HTTPS. Containers
are named `fm-*` and removed after each case, with any CRIU dump they left.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket

from _common import discard, isolate, print_machine, print_table, progress
from fault_matrix_cases import ONE_HOST, PHASES, Case, Services, as_row, run_case

FAULTS = ["kill target", "kill source", "cut link", "kill worker", "restart Redis"]
HEADERS = ["fault", "phase", "strategy / kind", "status", "terminal (s)", "ended on",
           "processes continued", "alive until the lab's restart", "copies left elsewhere",
           "bundle", "follow-ups"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cases(faults: list[str], strategies: list[str], phases: list[str] | None) -> list[Case]:
    found = []
    for fault, strategy in itertools.product(faults, strategies):
        if strategy in PHASES:
            found += [Case(fault, phase, strategy) for phase in PHASES[strategy]
                      if phases is None or phase in phases]  # fmt: skip
        elif fault != "kill target":  # one host: its own LXD is the "source"
            found.append(Case("cut link" if fault == "cut link" else fault, "CRIU work", strategy))
    return found


def bound_seconds(case: Case) -> int:
    """docs/operations.md: the poll timeout, the peer wait, the agent, the settling; a dead
    worker's operation is the reconciler's (measured here from its run)."""
    from django.conf import settings

    return 10 + settings.MIGRATION_PEER_WAIT_SECONDS + settings.AGENT_TIMEOUT_SECONDS + 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated")
    parser.add_argument("--strategies", default=",".join([*PHASES, *ONE_HOST]),
                        help="live, stateful_move, and one-host kinds")  # fmt: skip
    parser.add_argument("--phases", default="", help="comma-separated (default: all)")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",")] if args.phases else None
    selected = cases([f.strip() for f in args.faults.split(",")],
                     [s.strip() for s in args.strategies.split(",")], phases)  # fmt: skip
    if args.list:
        print_table(["fault", "phase", "strategy / kind"],
                    [(c.fault, c.phase, c.strategy) for c in selected])  # fmt: skip
        return
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    os.environ["PANEL_REDIS_URL"] = redis_url
    folder = isolate("faults")
    from tests.fault_tools import LAB_PY, lab_state, restore_lab
    from tests.lab_tools import enroll, untrust_certificate

    lab = lab_state()
    services = Services(folder, port)
    outcomes = []
    try:
        services.start_redis()
        services.start_worker()
        restore_lab(redis_url, agents=True)
        hosts = (enroll(lab["hosts"][0]), enroll(lab["hosts"][1]))
        for number, case in enumerate(selected, 1):
            progress(f"case {number}/{len(selected)}: {case.fault} / {case.phase} / "
                     f"{case.strategy}")  # fmt: skip
            outcomes.append(run_case(case, lab, hosts, services, redis_url))
            # each row as it comes: a slice stopped half way still leaves its results
            progress(" | ".join(str(cell) for cell in as_row(outcomes[-1])))
            restore_lab(redis_url, agents=True)
            if services.worker is None or services.worker.poll() is not None:
                try:
                    services.start_worker()
                except Exception as error:  # the cases so far are still reported below
                    progress(f"the worker could not be started again, stopping: {error}")
                    break
    finally:
        services.stop()
        os.system(f"python3 {LAB_PY} agents stop >/dev/null 2>&1")  # noqa: S605 (our own lab)
        from panel.hosts.identity import client_cert_files

        cert_path, _ = client_cert_files()  # the identity lives in the database (issue 16)
        for lab_host in lab["hosts"]:  # the bench's client certificate leaves the trust stores
            untrust_certificate(lab_host, cert_path)
        discard(folder)
    print_machine()
    print_table(HEADERS, [as_row(outcome) for outcome in outcomes])
    # A dead worker's operation is the reconciler's: its bound is the silence threshold and a
    # beat period (docs/operations.md), so it counts once it ended at all, and only once.
    reconciled = [o for o in outcomes if o.note.startswith("ended by the reconciler")
                  and o.status not in ("pending", "running", "?")]  # fmt: skip
    by_reconciler = {id(o) for o in reconciled}
    within = [o for o in outcomes if id(o) not in by_reconciler and o.terminal_seconds is not None
              and o.terminal_seconds <= bound_seconds(o.case)]  # fmt: skip
    print(
        f"{len(outcomes)} cases: {len(within) + len(reconciled)} terminal within the bound "
        f"({len(reconciled)} of them by the reconciler), "
        f"{sum(o.frozen for o in outcomes)} containers frozen, "
        f"{sum(o.ended_on == 'nowhere' for o in outcomes)} lost, "
        f"{sum(o.duplicate for o in outcomes)} duplicate running copies, "
        f"{sum(o.processes == 'yes' for o in outcomes)} with their processes continued."
    )


if __name__ == "__main__":
    main()
