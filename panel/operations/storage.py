"""What the storage pools on both sides cost a migration: pure rules over the pools' drivers.

LXD moves a container's filesystem natively between two btrfs pools (btrfs send/receive) or
two ZFS pools (zfs send/receive), and with rsync in every other case: rsync-type drivers
(dir, LVM, Ceph RBD and the others) and any two pools of different drivers (LXD falls back to
rsync). In a live migration over rsync, LXD runs a final sync after CRIU's dump, and that sync
asks for the container's state while the dump holds liblxc's lock; each ask gives up only
after 5 s, twice in LXD 5.0, once in LXD 5.21 and in Incus, and the container stays frozen
all that time (lab/README.md, "Where a live migration's 11 to 12 seconds go"). A native
transfer skips that sync. Checkpoint-move-restore moves a stopped container, so it never pays
it. Measured on the lab (docs/benchmarks.md): a live migration of the counter container
stood still 10.6 s on dir pools and about 0.6 s on btrfs; checkpoint-move-restore 1.3-1.5 s
on either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from panel.hosts.capabilities import version_tuple

NATIVE_DRIVERS = ("btrfs", "zfs")  # sent natively to a pool of the same driver
NATIVE, RSYNC, UNKNOWN = "native", "rsync", "unknown"
# A live migration's downtime for a small container where nothing else adds to it (CRIU's
# dump, the images' transfer and the restore), and a checkpoint-move-restore's: the priors
# a recommendation starts from before anything was measured between two hosts.
LIVE_BASE_SECONDS = 0.7
CHECKPOINT_MOVE_RESTORE_SECONDS = 1.4
FIX = (
    "The fix: a btrfs or ZFS pool on both hosts, with the container's root disk on it "
    "(choose that pool as the target's; on the source, `lxc move` the stopped container to it "
    "once), or checkpoint-move-restore, which this wait does not touch."
)


@dataclass(frozen=True)
class PoolPair:
    """The container's root pool on the source and the pool it will have on the target,
    with their drivers ('' when the host did not say)."""

    source_pool: str
    source_driver: str
    target_pool: str
    target_driver: str

    @property
    def transfer(self) -> str:
        """How LXD will move the filesystem: natively, with rsync, or unknown."""
        if not self.source_driver or not self.target_driver:
            return UNKNOWN
        if self.source_driver == self.target_driver and self.source_driver in NATIVE_DRIVERS:
            return NATIVE
        return RSYNC

    def as_dict(self) -> dict:
        return asdict(self)


def root_pool(container: dict) -> str:
    """The pool of the container's root disk (its expanded devices: a profile's count)."""
    for device in container.get("expanded_devices", {}).values():
        if device.get("type") == "disk" and device.get("path") == "/":
            return device.get("pool", "")
    return ""


def pool_pair(source_facts: dict, target_facts: dict, container: dict, chosen: str) -> PoolPair:
    """The pools a migration moves between: the chosen target pool, or one of the same name."""
    source_pool = root_pool(container)
    target_pool = chosen or source_pool
    return PoolPair(
        source_pool,
        (source_facts.get("storage_pool_drivers") or {}).get(source_pool, ""),
        target_pool,
        (target_facts.get("storage_pool_drivers") or {}).get(target_pool, ""),
    )


def final_sync_wait(source_facts: dict, source_driver: str) -> float:
    """Seconds a live migration over rsync stays frozen beyond CRIU's own work. The source
    runs the final sync, so its server, version and driver decide: LXD 5.0 asks twice when
    the source's driver freezes a running container to copy it (dir, LVM, Ceph RBD), once
    from a btrfs or ZFS pool (the second ask is skipped: measured on the lab, a live move
    from btrfs onto dir stood still 7.3 s, from dir onto dir 10.6 s); LXD 5.21 and Incus ask
    once."""
    if source_facts.get("server", "lxd") == "incus":
        return 5.0
    if version_tuple(source_facts.get("server_version", "")) >= (5, 21):
        return 5.0
    return 5.0 if source_driver in NATIVE_DRIVERS else 10.0


def expected_downtime(strategy: str, pools: PoolPair, source_facts: dict) -> tuple[float, float]:
    """The prior for a small container, from the drivers alone, in two parts: CRIU's and the
    transfer's work, which grows on a busier or slower host pair and with the container's
    memory, and LXD's fixed wait for its final sync (an unknown transfer is taken to be
    rsync, the costlier case)."""
    if strategy == "live":
        wait = (
            0.0 if pools.transfer == NATIVE else final_sync_wait(source_facts, pools.source_driver)
        )
        return LIVE_BASE_SECONDS, wait
    return CHECKPOINT_MOVE_RESTORE_SECONDS, 0.0


def describe(pools: PoolPair, source: str, target: str) -> str:
    def side(host: str, pool: str, driver: str) -> str:
        return f"{host}: pool {pool or '?'!r} ({driver or 'driver not reported'})"

    return (
        f"{side(source, pools.source_pool, pools.source_driver)} → "
        f"{side(target, pools.target_pool, pools.target_driver)}"
    )


def storage_verdict(pools: PoolPair, source_facts: dict, source: str, target: str):
    """(status, reason) of the pre-flight's storage check: pass when LXD sends the filesystem
    natively, warn (with the cost and the fix) when a live migration pays the final sync."""
    where = describe(pools, source, target)
    if pools.transfer == NATIVE:
        return "pass", (
            f"{where}. LXD sends {pools.source_driver} natively between them and skips the "
            "final filesystem sync: a live migration's downtime is CRIU's dump, the transfer "
            f"of its images and the restore (about {LIVE_BASE_SECONDS} s for a small container)."
        )
    if pools.transfer == UNKNOWN:
        return "unknown", (
            f"{where}. Without both drivers the panel cannot tell whether a live migration "
            "pays LXD's final filesystem sync (about 10 s more downtime on rsync-type pools); "
            "it assumes it does."
        )
    wait = final_sync_wait(source_facts, pools.source_driver)
    why = (
        "different drivers, so LXD falls back to rsync"
        if pools.source_driver != pools.target_driver
        else f"{pools.source_driver} is an rsync-type pool"
    )
    return "warn", (
        f"{where}: {why}. In a live migration LXD then syncs the filesystem once more after "
        "CRIU's dump, and asks for the container's state while the dump holds liblxc's lock, "
        f"waiting out its 5 s timeout ({'twice' if wait > 5 else 'once'} on {source}'s "
        f"server): expect about {wait:.0f} s more downtime (the container frozen). "
        f"Checkpoint-move-restore does not pay it (about {CHECKPOINT_MOVE_RESTORE_SECONDS} s "
        f"down). {FIX}"
    )
