"""Run by hand, not in CI: `bin/test tests/findings_cross_platform_live_lab.py -s`.

LAB.md section 9's finding, kept as a lab check: a live move of a running container between
LXD 5.0.2 and Incus 6.0.4, made with the panel's own LXD calls, fails CRIU's restore on the
target, and the panel's verification (init's PID and processes) sees it even when both
servers report Success. The panel itself never tries this (pre-flight refuses CRIU strategies
across the two: tests/test_platforms.py). Not in CI because in the "both Success" case Incus
cannot delete its broken copy (its stop hangs) and the lab's incus1 stays wedged until its
daemon is restarted (kill it, then `python3 lab/lab.py up --incus 2`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from panel import lxd
from panel.hosts.connection import target_for
from panel.operations.verify import running_for_real
from tests.conftest import wait_for
from tests.lab_tools import lxc, running_counter

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def restore_errors(lab_host: dict, name: str) -> list[str]:
    """CRIU's error lines in the restore logs the host's server kept for `name`."""
    tree = Path(lab_host.get("incus_dir") or lab_host["lxd_dir"]).parent / "log" / name
    lines = [line for log in sorted(tree.glob("*restore*.log"))
             for line in log.read_text(errors="replace").splitlines()]  # fmt: skip
    return [line.strip()[-160:] for line in lines if "Error" in line][:6]


@pytest.mark.parametrize("direction", ["lxd_to_incus", "incus_to_lxd"])
def test_a_live_move_across_lxd_and_incus_fails_its_restore_and_the_verification_sees_it(
    lab, incus_lab, fleet, incus_fleet, direction
):
    """LAB.md section 9's case, run with the panel's own LXD calls, in both directions: a live
    move of a running container to the other platform (its guest API removed first, its
    config translated by the platform table, migration.stateful=true on Incus's side). From
    LXD 5.0.2 to Incus 6.0.4 both servers ended Success while CRIU's restore failed. The check
    the migration runs before touching the source sees it; the status alone may not. This is
    why pre-flight offers no CRIU strategy between the two (docs/platforms.md)."""
    lxd_side = (lab["hosts"][0], fleet[0])
    incus_side = (incus_lab[0], incus_fleet[0])
    (lab_source, source_host), (lab_target, target_host) = (
        (lxd_side, incus_side) if direction == "lxd_to_incus" else (incus_side, lxd_side)
    )
    platforms = (source_host.platform, target_host.platform)
    guest_api = {"lxd": "security.devlxd", "incus": "security.guestapi"}[platforms[0].key]
    with running_counter(lab, lab_source, "lie") as name:
        gates = ["migration.stateful=true"] if platforms[0] is lxd.INCUS else []
        lxc(lab_source, "config", "set", name, f"{guest_api}=false", *gates)
        source, target = target_for(source_host), target_for(target_host)
        definition = lxd.instance_definition(source, name)
        if platforms[1] is lxd.INCUS:
            definition["config"]["migration.stateful"] = "true"
        source_op, secrets = lxd.start_migration_source(source, name, live=True)
        origin = {"mode": "pull", **lxd.migration_peer(source, source_op, secrets)}
        body = lxd.migration_target_body(definition, name, True, "", origin, platforms)
        assert guest_api not in body["config"]  # translated by the platform table
        started = time.monotonic()
        try:
            target_op, _ = lxd.start_migration_target(target, body)
            target_state = wait_for(
                lambda: (s := lxd.wait_operation(target, target_op, 10)) and s.finished and s,
                timeout=240, what="the target's side of the move",
            )  # fmt: skip
            outcome = f"{target_state.status} {target_state.error!r}"
        except lxd.LXDError as error:  # refused before any transfer
            target_state, outcome = None, f"refused: {error}"
        source_state = lxd.wait_operation(source, source_op, 30)
        problem, evidence = running_for_real(target, name)
        print(
            f"{direction} live: target {outcome} after {time.monotonic() - started:.1f} s, "
            f"source {source_state.status if source_state else 'forgotten'}; target status "
            f"{lxd.instance_status(target, name)}, source status "
            f"{lxd.instance_status(source, name)}; verification: {problem!r} {evidence}"
        )
        print(f"{direction}: CRIU on the target said: {restore_errors(lab_target, name)}")
        assert problem, "a copy CRIU could not restore across platforms passed the verification"
        if target_state is not None and target_state.status == "Success":  # the lie
            assert evidence.get("pid", 0) == 0 or "init" in problem, evidence
