"""Migration rules without LXD: pre-flight verdicts, the default strategy, dump-log parsing."""

from __future__ import annotations

import pytest
from django.utils import timezone

from panel.models import Host, InstanceLog, Operation
from panel.operations.downtime import criu_frozen_seconds, downtime_figure
from panel.operations.preflight import FAIL, PASS, UNKNOWN, WARN, Side, blocked, run_checks
from panel.operations.storage import PoolPair
from panel.operations.strategy import pools_for, recommend
from tests.helpers import make_host, make_instance

FACTS = {
    "server": "lxd",
    "server_version": "5.0.2",
    "driver": "lxc",
    "kernel_version": "6.18.4",
    "architectures": ["x86_64"],
    "storage_pools": ["default"],
    "profiles": ["default"],
    "networks": ["lxdbr0"],
    "cpu_flags": ["sse2", "avx"],
}
CONTAINER = {
    "architecture": "x86_64",
    "profiles": ["default"],
    "expanded_devices": {
        "root": {"type": "disk", "path": "/", "pool": "default"},
        "eth0": {"type": "nic", "network": "lxdbr0"},
    },
}


def succeeded_migration(source: Host, target: Host, downtime: float, result: dict) -> Operation:
    """A migration of container "c" that ended well, as the worker leaves its row."""
    return Operation.objects.create(
        kind="migrate",
        instance_name="c",
        source_host=source,
        target_host=target,
        status="succeeded",
        downtime_seconds=downtime,
        finished_at=timezone.now(),
        result=result,
    )


def checks(source_facts=None, target_facts=None, container=None, pool="", taken=False):
    source = Side("h1", True, True, "", {**FACTS, **(source_facts or {})})
    target = Side("h2", True, True, "", {**FACTS, **(target_facts or {})})
    result = run_checks(source, target, container or CONTAINER, pool, "c1", taken)
    return {check.key: check for check in result}


def test_two_alike_hosts_pass_everything_that_can_be_known():
    result = checks()
    assert {k for k, c in result.items() if c.status == FAIL} == set()
    assert result["cpu_flags"].status == PASS
    assert result["target_reaches_source"].status == UNKNOWN  # the migration itself tests it


def test_missing_cpu_flags_block_live_strategies_but_not_a_cold_move():
    result = checks(target_facts={"cpu_flags": ["sse2"]})
    assert result["cpu_flags"].status == FAIL and "lacks avx" in result["cpu_flags"].reason
    all_checks = list(result.values())
    assert blocked(all_checks, "live") and blocked(all_checks, "stateful_move")
    assert not blocked(all_checks, "cold")


def test_unknown_cpu_flags_say_why_and_do_not_block():
    result = checks(source_facts={"cpu_flags": None})
    assert result["cpu_flags"].status == UNKNOWN
    assert "LXD 5.0 does not report them" in result["cpu_flags"].reason


def test_an_older_target_kernel_blocks_live_strategies():
    result = checks(target_facts={"kernel_version": "5.15.0"})
    assert result["kernel"].status == FAIL and "syscalls" in result["kernel"].reason


def test_an_other_architecture_name_taken_missing_pool_profile_network_block_everything():
    result = checks(
        target_facts={
            "architectures": ["aarch64"],
            "storage_pools": ["fast"],
            "profiles": [],
            "networks": [],
        },
        taken=True,
    )
    for key in ("architecture", "name_free", "storage_pool", "profiles", "networks"):
        assert result[key].status == FAIL and "cold" in result[key].blocks, key
    assert "choose one of them" in result["storage_pool"].reason
    assert (
        checks(pool="fast", target_facts={"storage_pools": ["fast"]})["storage_pool"].status == PASS
    )


def test_an_unreachable_or_untrusting_host_stops_the_checks_there():
    source = Side("h1", True, True, "", FACTS)
    target = Side("h2", False, False, "Cannot connect to https://h2:8443", {})
    result = run_checks(source, target, CONTAINER, "", "c1", False)
    assert [c.status for c in result] == [PASS, FAIL]
    assert "Cannot connect" in result[1].reason


def test_incremental_memory_is_offered_only_with_dirty_tracking_on_both():
    off = {"mem_dirty_track": {"ok": False, "output": "Dirty tracking is OFF."}}
    on = {"mem_dirty_track": {"ok": True, "output": ""}}
    assert checks()["incremental_memory"].status == UNKNOWN
    assert checks(off, on)["incremental_memory"].status == WARN
    assert "h1" in checks(off, on)["incremental_memory"].reason
    assert checks(on, on)["incremental_memory"].status == PASS


DIR, BTRFS = {"storage_pool_drivers": {"default": "dir"}}, {"storage_pool_drivers": {"bt": "btrfs"}}
ON_BT = {**CONTAINER, "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "bt"}}}


def test_btrfs_on_both_sides_passes_and_says_the_final_sync_is_skipped():
    check = checks(BTRFS, BTRFS, container=ON_BT)["storage_transfer"]
    assert check.status == PASS and not check.blocks
    assert "h1: pool 'bt' (btrfs) → h2: pool 'bt' (btrfs)" in check.reason
    assert "natively" in check.reason and "skips the final filesystem sync" in check.reason


def test_an_rsync_type_pool_warns_of_the_final_sync_its_cost_and_the_fix():
    check = checks(DIR, DIR)["storage_transfer"]
    assert check.status == WARN and not check.blocks  # advisory: nothing is blocked
    assert "dir is an rsync-type pool" in check.reason
    assert "about 10 s more downtime" in check.reason and "twice" in check.reason
    assert "a btrfs or ZFS pool on both hosts" in check.reason
    newer = checks({**DIR, "server_version": "5.21.2"}, DIR)["storage_transfer"]
    assert "about 5 s more downtime" in newer.reason and "once" in newer.reason
    incus = checks({**DIR, "server": "incus", "server_version": "6.0.4"}, DIR)
    assert "about 5 s more downtime" in incus["storage_transfer"].reason


def test_pools_of_different_drivers_fall_back_to_rsync_and_say_so():
    both = {"storage_pool_drivers": {"default": "dir", "bt": "btrfs"}}
    check = checks(both, both, pool="bt")["storage_transfer"]  # dir on h1 onto bt on h2
    assert check.status == WARN
    assert "h1: pool 'default' (dir) → h2: pool 'bt' (btrfs)" in check.reason
    assert "different drivers, so LXD falls back to rsync" in check.reason
    zfs = {"storage_pool_drivers": {"bt": "zfs"}}
    from_btrfs = checks(BTRFS, zfs, container=ON_BT)["storage_transfer"]
    assert from_btrfs.status == WARN and "about 5 s more downtime" in from_btrfs.reason


def test_unreported_drivers_leave_the_storage_check_unknown():
    check = checks()["storage_transfer"]
    assert check.status == UNKNOWN and "driver not reported" in check.reason


def pools(source: str, target: str) -> PoolPair:
    return PoolPair("p", source, "p", target)


@pytest.mark.django_db
def test_before_any_measurement_the_drivers_prior_decides():
    h1, h2 = make_host("h1"), make_host("h2")
    strategy, reason = recommend(h1, h2, True, True, pools("btrfs", "btrfs"))
    assert strategy == "live"
    assert "live migration about 0.7 s (not measured yet for these pools" in reason
    assert "LXD sends btrfs natively" in reason and "Using live migration, the lower" in reason
    strategy, reason = recommend(h1, h2, True, True, pools("dir", "dir"))
    assert strategy == "stateful_move" and "about 10.7 s" in reason
    assert "dir is an rsync-type pool" in reason
    strategy, reason = recommend(h1, h2, True, True, pools("dir", "btrfs"))
    assert strategy == "stateful_move" and "different drivers: LXD falls back to rsync" in reason
    assert recommend(h1, h2, True, True)[0] == "stateful_move"  # drivers unknown: rsync assumed
    assert recommend(h1, h2, running=False, criu_possible=True)[0] == "stopped"
    assert recommend(h1, h2, running=True, criu_possible=False)[0] == "cold"


@pytest.mark.django_db
def test_measured_downtimes_win_over_the_prior_per_host_pair_and_pool_pair():
    h1, h2 = make_host("h1"), make_host("h2")
    on_dir = {"pools": pools("dir", "dir").as_dict()}
    for strategy, downtime in [
        ("live", 10.5),
        ("live", 10.9),
        ("stateful_move", 1.4),
        ("stateful_move", 30.0),
        ("stateful_move", 29.0),
    ]:
        succeeded_migration(h1, h2, downtime, {"strategy": strategy, **on_dir})
    strategy, reason = recommend(h1, h2, True, True, pools("dir", "dir"))
    assert strategy == "live"
    assert "live migration 10.70 s (median of 2 measured)" in reason
    assert "checkpoint, move, restore 29.00 s (median of 3 measured)" in reason
    assert recommend(h2, h1, True, True, pools("dir", "dir"))[0] == "stateful_move"  # per pair
    # The same hosts on btrfs pools: none of those measurements count, the prior decides.
    assert recommend(h1, h2, True, True, pools("btrfs", "btrfs"))[0] == "live"
    on_btrfs = {"pools": pools("btrfs", "btrfs").as_dict()}
    succeeded_migration(h1, h2, 1.4, {"strategy": "live", **on_btrfs})  # a busy host pair
    strategy, reason = recommend(h1, h2, True, True, pools("btrfs", "btrfs"))
    assert strategy == "live"  # the other's prior is scaled alike: 1.4 s, twice
    assert "live migration 1.40 s (median of 1 measured)" in reason
    assert "checkpoint, move, restore about 2.8 s" in reason and "2.0 times the lab's" in reason
    succeeded_migration(h1, h2, 2.0, {"strategy": "stateful_move", **on_btrfs})
    assert recommend(h1, h2, True, True, pools("btrfs", "btrfs"))[0] == "live"
    for _ in range(2):
        succeeded_migration(h1, h2, 0.9, {"strategy": "stateful_move", **on_btrfs})
    assert recommend(h1, h2, True, True, pools("btrfs", "btrfs"))[0] == "stateful_move"


@pytest.mark.django_db
def test_the_request_side_reads_the_pools_from_the_last_sync():
    h1 = make_host("h1", facts={**FACTS, "storage_pool_drivers": {"bt": "btrfs"}})
    h2 = make_host("h2", facts={**FACTS, "storage_pool_drivers": {"bt": "btrfs", "default": "dir"}})
    instance = make_instance(h1, expanded_devices=ON_BT["expanded_devices"])
    assert pools_for(instance, h2, "") == PoolPair("bt", "btrfs", "bt", "btrfs")
    assert pools_for(instance, h2, "default") == PoolPair("bt", "btrfs", "default", "dir")


@pytest.mark.django_db
def test_the_frozen_interval_is_read_from_the_newest_migration_dump_log():
    instance = make_instance(make_host())
    log = "\n".join(
        [
            "(00.000000) CRIU run id = x",
            "(00.026061) freezing cgroup /sys/fs/x",
            "(00.026197) freezer.state=FREEZING",
            "(00.126316) freezer.state=FROZEN",
            "(00.250837) \t[/tmp/lxd_checkpoint/action.sh]",
            "(10.774354) Unfreezing tasks into 2",
            "(10.774709) Dumping finished",
        ]
    )
    InstanceLog.objects.create(
        instance=instance, filename="migration_dump_2026-01-01.log", content=""
    )
    InstanceLog.objects.create(
        instance=instance, filename="migration_dump_2026-02-01.log", content=log
    )
    assert criu_frozen_seconds(instance) == pytest.approx(10.748, abs=0.001)


@pytest.mark.django_db
def test_the_migration_form_offers_other_hosts_only_and_refuses_an_unreachable_one(operator_client):
    h1 = make_host("h1")
    h2 = make_host("h2", status=Host.Status.UNREACHABLE, last_error="no route to host")
    instance = make_instance(h1)
    page = operator_client.get(f"/containers/{instance.pk}/").content.decode()
    assert f'<option value="{h2.pk}">h2</option>' in page
    assert f'<option value="{h1.pk}">' not in page
    response = operator_client.post(
        f"/containers/{instance.pk}/migrate/check/",
        {"target": h2.pk, "strategy": "auto"},
        follow=True,
    )
    assert "h2 is unreachable: no route to host" in response.content.decode()
    assert not Operation.objects.exists()


@pytest.mark.django_db
def test_viewers_cannot_migrate(viewer_client):
    instance = make_instance(make_host("h1"))
    target = make_host("h2")
    response = viewer_client.post(
        f"/containers/{instance.pk}/migrate/check/", {"target": target.pk}
    )
    assert response.status_code == 403


def test_downtime_is_criu_s_interval_plus_any_first_copy_freeze_else_the_observation():
    assert downtime_figure(10.6, None, 10.7) == (10.6, "CRIU's dump log")
    # LXD froze for its first copy (no cluster_migration_inconsistent_copy): that counts too.
    figure, source = downtime_figure(10.6, 0.17, 11.05)
    assert figure == pytest.approx(10.77)
    assert "plus LXD's freeze for its first copy (0.17 s" in source
    assert downtime_figure(None, None, 1.4) == (1.4, "the panel's observation of LXD's states")
    assert downtime_figure(None, None, None) == (None, "not measured")


@pytest.mark.django_db
def test_the_page_says_where_the_downtime_comes_from_and_shows_the_cross_check(operator_client):
    h1, h2 = make_host("h1"), make_host("h2")
    phases = [{"name": "frozen", "start": 0.3, "end": 10.9, "duration": 10.6, "down": True}]
    figure, source = downtime_figure(10.6, 0.17, 11.05)
    operation = succeeded_migration(h1, h2, figure, {
        "strategy": "live",
        "total_seconds": 11.5,
        "phases": phases,
        "criu_frozen_seconds": 10.6,
        "observed_downtime_seconds": 11.05,
        "first_copy_freeze_seconds": 0.17,
        "downtime_source": source,
    })  # fmt: skip
    page = operator_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "10.77 s (the container was not running anywhere; from CRIU&#x27;s dump log" in page
    assert "first copy (0.17 s, observed)" in page
    assert "observed from LXD's states: 11.05 s" in page
