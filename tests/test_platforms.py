"""LXD and Incus as data: the platform table's rules, the config translation, the backup
rewrite and the capability words, as pure logic. The same paths run against the lab's real
servers in tests/test_incus_lab.py and tests/test_incus_migration_lab.py."""

from __future__ import annotations

import io
import tarfile

import yaml

from panel import lxd
from panel.hosts.capabilities import NO, UNKNOWN, YES, host_capabilities
from panel.lxd.backups import is_config, is_state
from panel.lxd.platforms import identify, platform_of
from panel.operations.preflight import criu_between

INCUS_604 = {
    "server": "incus",
    "server_version": "6.0.4",
    "driver": "lxc | qemu",
    "system_type": "physical",
    "api_extensions": ["dev_incus_events", "container_migration_stateful"],
    "kernel_features": {"idmapped_mounts": "false"},
}


def states(facts: dict) -> dict[str, tuple[str, str]]:
    return {c.key: (c.state, c.reason) for c in host_capabilities(facts, https=True)}


def test_an_untrusted_server_is_told_apart_by_its_api_extensions():
    assert identify(["devlxd_events", "container_syscall_intercept"]) is lxd.LXD
    assert identify(["dev_incus_events"]) is lxd.INCUS
    assert platform_of({"api_extensions": ["dev_incus_events"]}) is lxd.INCUS
    assert platform_of({"server": "incus", "api_extensions": []}) is lxd.INCUS
    assert platform_of({}) is lxd.LXD  # LXD before 4.x said nothing


def test_incus_with_a_passing_criu_check_says_incus_its_version_and_the_config_it_needs():
    facts = {**INCUS_604, "criu_check": {"ok": True, "output": "Looks good."}}
    state, reason = states(facts)["stateful_snapshot"]
    assert state == YES
    assert reason.startswith("Incus 6.0.4 (with migration.stateful=true on the container")
    assert "`criu check` passes on the host" in reason
    assert states(INCUS_604)["live_migration"][0] == UNKNOWN  # no agent yet: said, not hidden


def test_incus_with_idmapped_root_filesystems_cannot_checkpoint_and_says_how_to_fix_it():
    facts = {**INCUS_604, "kernel_features": {"idmapped_mounts": "true"},
             "criu_check": {"ok": True, "output": "Looks good."}}  # fmt: skip
    for state, reason in states(facts).values():
        assert state == NO
        assert "Can't open fake fifo" in reason and "INCUS_IDMAPPED_MOUNTS_DISABLE=1" in reason
    # LXD 5.0 shifts the files on disk even where the kernel could idmap them.
    lxd_facts = {"server": "lxd", "server_version": "5.0.2", "driver": "lxc",
                 "kernel_features": {"idmapped_mounts": "true"}}  # fmt: skip
    assert states(lxd_facts)["stateful_snapshot"][0] == UNKNOWN


def test_a_checkpoint_needs_migration_stateful_only_where_the_server_announces_it():
    assert lxd.checkpoint_config(lxd.INCUS, INCUS_604["api_extensions"]) == {
        "migration.stateful": "true"
    }
    assert lxd.checkpoint_config(lxd.INCUS, ["dev_incus_events"]) == {}
    assert lxd.checkpoint_config(lxd.LXD, ["container_migration_stateful"]) == {}


def test_lxd_config_is_translated_for_incus_keeping_what_both_know():
    config = {
        "security.devlxd": "false",
        "security.nesting": "true",
        "limits.network.priority": "3",
        "user.note": "kept",
        "volatile.base_image": "abc",
        "volatile.eth0.hwaddr": "00:16:3e:00:00:01",
        "volatile.last_state.power": "RUNNING",
        "volatile.eth0.host_name": "veth123",
        "image.os": "busybox",
    }
    translation = lxd.translate_config(config, lxd.LXD, lxd.INCUS)
    assert translation.config == {
        "security.guestapi": "false",
        "security.nesting": "true",
        "user.note": "kept",
        "volatile.base_image": "abc",
        "volatile.eth0.hwaddr": "00:16:3e:00:00:01",
        "volatile.last_state.power": "RUNNING",
        "image.os": "busybox",
    }
    assert translation.renamed == [("security.devlxd", "security.guestapi")]
    assert translation.dropped == ["limits.network.priority"]
    assert translation.summary(lxd.LXD, lxd.INCUS) == (
        "security.devlxd becomes security.guestapi; limits.network.priority is left out "
        "(Incus has no such setting)"
    )


def test_incus_config_is_translated_for_lxd_and_incus_bookkeeping_stays_behind():
    config = {
        "security.guestapi": "false",
        "migration.stateful": "true",
        "volatile.uuid.generation": "x",
        "volatile.last_state.ready": "false",
        "volatile.uuid": "u",
    }
    translation = lxd.translate_config(config, lxd.INCUS, lxd.LXD)
    assert translation.config == {"security.devlxd": "false", "volatile.uuid": "u"}
    assert translation.dropped == ["migration.stateful"]
    same = lxd.translate_config(config, lxd.INCUS, lxd.INCUS)
    assert same.config == config and not same.renamed and not same.dropped


def test_no_criu_strategy_is_offered_between_the_platforms_and_the_reason_names_the_mounts():
    assert criu_between(lxd.LXD, lxd.LXD) == "" and criu_between(lxd.INCUS, lxd.INCUS) == ""
    there = criu_between(lxd.LXD, lxd.INCUS)
    assert "/dev/.lxd-mounts" in there and "stopped, moved and started on Incus" in there
    back = criu_between(lxd.INCUS, lxd.LXD)
    assert "/dev/incus" in back and "stopped, moved and started on LXD" in back
    assert "No mapping for" in there and "Can't bind-mount at .../dev/.incus-mounts" in back


def backup_tarball(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_backup_streams_through_with_its_configs_translated_and_its_criu_images_left_out():
    index = {
        "name": "c1",
        "config": {
            "container": {"name": "c1", "stateful": True, "created_at": "2026-12-01T11:43:54Z",
                          "config": {"security.devlxd": "false", "volatile.idmap.base": "0"}},
            "snapshots": [
                {"name": "plain", "stateful": False, "config": {"limits.network.priority": "1"}},
                {"name": "cp", "stateful": True, "config": {"security.devlxd": "false"}},
            ],
        },
    }  # fmt: skip
    snapshot_yaml = {"container": {"name": "c1", "config": {"security.devlxd": "true"}}}
    rootfs_yaml = b"a file of the container's own, left as it is: security.devlxd"
    source = backup_tarball({
        "backup/index.yaml": yaml.safe_dump(index).encode(),
        "backup/container/backup.yaml": yaml.safe_dump(snapshot_yaml).encode(),
        "backup/container/rootfs/tmp/counter": b"41",
        "backup/container/rootfs/backup.yaml": rootfs_yaml,
        "backup/container/state/pages-1.img": b"CRIU",
        "backup/snapshots/cp/state/pages-1.img": b"CRIU",
        "backup/snapshots/cp/backup.yaml": yaml.safe_dump(snapshot_yaml).encode(),
        "backup/snapshots/cp/rootfs/tmp/counter": b"17",
    })  # fmt: skip
    rewrite = lxd.Rewrite(lxd.LXD, lxd.INCUS)
    out = b"".join(lxd.translated(chunks(source), rewrite))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert not [name for name in files if is_state(name)]
    assert files["backup/container/rootfs/tmp/counter"] == b"41"
    assert files["backup/snapshots/cp/rootfs/tmp/counter"] == b"17"
    assert files["backup/container/rootfs/backup.yaml"] == rootfs_yaml
    got = yaml.safe_load(files["backup/index.yaml"])
    container = got["config"]["container"]
    assert container["config"] == {"security.guestapi": "false", "volatile.idmap.base": "0"}
    assert container["stateful"] is False
    assert "2026-12-01T11:43:54Z" in files["backup/index.yaml"].decode()  # RFC 3339 kept
    assert [s["stateful"] for s in got["config"]["snapshots"]] == [False, False]
    assert got["config"]["snapshots"][0]["config"] == {}
    for name in ("backup/container/backup.yaml", "backup/snapshots/cp/backup.yaml"):
        assert yaml.safe_load(files[name])["container"]["config"] == {"security.guestapi": "true"}
    assert rewrite.renamed == {("security.devlxd", "security.guestapi")}
    assert rewrite.dropped == {"limits.network.priority"}
    assert rewrite.stateless == [
        "the saved state (it starts afresh)",
        "snapshot cp (now a filesystem snapshot)",
    ]


def test_only_the_backups_own_config_files_and_criu_images_are_recognised():
    assert is_config("backup/index.yaml") and is_config("backup/snapshots/s/backup.yaml")
    assert not is_config("backup/container/rootfs/etc/backup.yaml")
    assert is_state("backup/container/state/core-1.img")
    assert is_state("backup/snapshots/s/state/core-1.img")
    assert not is_state("backup/container/rootfs/state/x") and not is_state("backup/snapshots/s")
