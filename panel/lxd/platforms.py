"""LXD and Incus: what differs between the two servers the panel manages, as data.

Incus is LXD's community fork. Both speak the same /1.0 REST API, and one module (this
package) talks to both; where they differ (names, files, trust, config keys, what CRIU
needs), the code reads this table instead of branching on the server's name. Each fact here
was seen on the lab's LXD 5.0.2 and Incus 6.0.4 hosts (lab/README.md, docs/platforms.md).

Pure data and pure functions: no pylxd, no Django, so settings, the agent and the tests can
read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Platform:
    """One kind of server: its names, files, rules, and its own config keys."""

    key: str  # what GET /1.0 reports as environment.server
    name: str  # what the UI and the bundles say
    cli: str  # its command-line client, for commands quoted in bug reports
    # Before the panel is trusted, GET /1.0 has no `environment`; its API extensions still
    # tell the two apart (Incus renamed LXD's `devlxd` extensions `dev_incus`).
    marker_extension: str
    trust_passwords: bool  # LXD 5.0 takes core.trust_password; Incus has none
    trust_add_command: str  # how an admin makes a token for the panel on the host
    # The daemon's log in its log folder, in the order the agent looks for it: Debian's
    # incus package (and Incus's own docs) write incus.log; other setups incusd.log.
    daemon_logs: tuple[str, ...]
    bridge_file: str  # LXD 2.x's bridge config, which the checkpoint/restore announcement asks for
    # The release that removed CRIU for containers (LXD 6.6), or None while it has it.
    criu_removed_in: tuple[int, int] | None
    # Config a container needs before CRIU may checkpoint it, when the server announces the
    # API extension: Incus 6.0.4 refuses stateful snapshots and stops without it.
    checkpoint_config: dict[str, str]
    checkpoint_extension: str
    # Incus gives containers idmapped root filesystems where the kernel allows (it reports
    # kernel_features.idmapped_mounts), and CRIU cannot restore those; LXD 5.0 shifts the
    # files on disk even where it reports the feature (the lab's LXD 5.0.2 does).
    idmapped_rootfs_breaks_criu: bool
    # Mounts this platform puts into every container, which a CRIU image then holds and
    # which only a server of the same platform recreates at restore (docs/platforms.md).
    own_mounts: tuple[str, ...]
    # Container config keys that mean the same setting under another name on the other
    # platform: {this platform's key: the neutral name in NEUTRAL_NAMES}.
    renamed_keys: dict[str, str]
    # Container config keys only this platform takes; the other refuses them ("Unknown
    # configuration key"), so a move to it leaves them behind and says so.
    own_keys: frozenset[str]
    # The prefix of the headers a backup import reads (X-LXD-name, X-Incus-name).
    header_prefix: str
    # What CRIU said when the other platform restored this platform's checkpoint (the lab,
    # tests/test_incus_migration_lab.py), quoted by pre-flight.
    foreign_restore_error: str = ""
    # `lxc`/`incus` equivalents of the panel's operations, quoted in report.md.
    commands: dict[str, str] = field(default_factory=dict)

    def command(self, what: str) -> str:
        """One of `commands`, e.g. command("info") is "lxc info" or "incus info"."""
        return self.commands[what]


# The neutral names of settings both platforms have under different keys.
GUEST_API, GUEST_API_IMAGES = "guest API (/dev/lxd, /dev/incus)", "guest API images"

LXD = Platform(
    key="lxd",
    name="LXD",
    cli="lxc",
    marker_extension="devlxd_events",
    trust_passwords=True,
    trust_add_command="lxc config trust add --name lxd-panel",
    daemon_logs=("lxd.log",),
    bridge_file="/etc/default/lxd-bridge",
    criu_removed_in=(6, 6),
    checkpoint_config={},
    checkpoint_extension="",
    idmapped_rootfs_breaks_criu=False,
    own_mounts=("/dev/lxd", "/dev/.lxd-mounts", "/proc/sys/fs/binfmt_misc"),
    renamed_keys={"security.devlxd": GUEST_API, "security.devlxd.images": GUEST_API_IMAGES},
    # Seen refused by Incus 6.0.4 ("Unknown configuration key"); LXD 5.0 takes them.
    own_keys=frozenset({"limits.network.priority"}),
    header_prefix="X-LXD-",
    foreign_restore_error="mnt: No mapping for 219:(null) mountpoint",
    commands={
        "snapshot": "lxc snapshot {c} {snapshot}",
        "stateful_snapshot": "lxc snapshot {c} {snapshot} --stateful",
        "restore": "lxc restore {c} {snapshot}{stateful}",
        "delete_snapshot": "lxc delete {c}/{snapshot}",
        "start": "lxc start {c}",
        "start_fresh": "lxc start {c}  # after discarding the saved state",
        "stop": "lxc stop {c}",
        "restart": "lxc restart {c}",
        "stateful_stop": "lxc stop {c} --stateful",
        "migrate": "lxc move {source}:{c} {target}:",
        "delete_copy": "lxc delete {c}",
        "release_dump": "kill -TERM <the lxd migratedumpsuccess under criu dump of {c}>",
        "info": "lxc info",
        "instance_info": "lxc info {c}",
        "config_show": "lxc config show --expanded {c}",
        "exec_mountinfo": "lxc exec {c} -- cat /proc/self/mountinfo",
    },
)

INCUS = Platform(
    key="incus",
    name="Incus",
    cli="incus",
    marker_extension="dev_incus_events",
    trust_passwords=False,
    trust_add_command="incus config trust add lxd-panel",
    daemon_logs=("incus.log", "incusd.log"),
    bridge_file="",
    criu_removed_in=None,
    checkpoint_config={"migration.stateful": "true"},
    checkpoint_extension="container_migration_stateful",
    idmapped_rootfs_breaks_criu=True,
    own_mounts=("/dev/incus", "/dev/.incus-mounts"),
    renamed_keys={"security.guestapi": GUEST_API, "security.guestapi.images": GUEST_API_IMAGES},
    # Seen refused by LXD 5.0.2 ("Unknown configuration key"); Incus 6.0 takes them.
    own_keys=frozenset(
        {"migration.stateful", "boot.autorestart", "boot.host_shutdown_action", "limits.cpu.nodes"}
    ),
    header_prefix="X-Incus-",
    foreign_restore_error="mnt: Can't bind-mount at .../dev/.incus-mounts: No such file",
    commands={
        "snapshot": "incus snapshot create {c} {snapshot}",
        "stateful_snapshot": "incus snapshot create {c} {snapshot} --stateful",
        "restore": "incus snapshot restore {c} {snapshot}{stateful}",
        "delete_snapshot": "incus snapshot delete {c} {snapshot}",
        "start": "incus start {c}",
        "start_fresh": "incus start {c}  # after discarding the saved state",
        "stop": "incus stop {c}",
        "restart": "incus restart {c}",
        "stateful_stop": "incus stop {c} --stateful",
        "migrate": "incus move {source}:{c} {target}:",
        "delete_copy": "incus delete {c}",
        "release_dump": "kill -TERM <the migratedumpsuccess helper under criu dump of {c}>",
        "info": "incus info",
        "instance_info": "incus info {c}",
        "config_show": "incus config show --expanded {c}",
        "exec_mountinfo": "incus exec {c} -- cat /proc/self/mountinfo",
    },
)

PLATFORMS = {platform.key: platform for platform in (LXD, INCUS)}

# Bookkeeping keys both platforms keep under the same names and meaning; on a move between
# the two, every other `volatile.*` key is left for the target to make anew (LXD 5.0.2
# refuses Incus's `volatile.uuid.generation` and `volatile.last_state.ready`). The idmap keys
# must stay: they say how the files on disk are shifted.
SHARED_VOLATILE = frozenset(
    {
        "volatile.apply_template",
        "volatile.base_image",
        "volatile.cloud-init.instance-id",
        "volatile.idmap.base",
        "volatile.idmap.current",
        "volatile.idmap.next",
        "volatile.last_state.idmap",
        "volatile.last_state.power",
        "volatile.uuid",
    }
)
# A NIC's MAC address, kept so the container keeps its address on the new host.
DEVICE_VOLATILE = re.compile(r"^volatile\.[^.]+\.hwaddr$")


def platform_named(key: str | None) -> Platform:
    """The platform a server reports as environment.server; LXD when it says nothing (LXD
    before 4.x did not report it)."""
    return PLATFORMS.get(key or "lxd", LXD)


def platform_of(facts: dict) -> Platform:
    """The platform of a host from its stored facts: `server` once trusted, else the API
    extensions an untrusted GET /1.0 gave."""
    if facts.get("server"):
        return platform_named(facts["server"])
    return identify(facts.get("api_extensions") or [])


def identify(api_extensions: list[str]) -> Platform:
    """Which platform announced these API extensions (GET /1.0 lists them before trust)."""
    return next((p for p in (INCUS, LXD) if p.marker_extension in api_extensions), LXD)


def checkpoint_config(platform: Platform, api_extensions: list[str]) -> dict[str, str]:
    """What a container's config must hold before this server checkpoints it."""
    if platform.checkpoint_extension and platform.checkpoint_extension in api_extensions:
        return dict(platform.checkpoint_config)
    return {}


@dataclass(frozen=True)
class Translation:
    """A container's config made fit for another platform, and what changed, in words."""

    config: dict[str, str]
    renamed: list[tuple[str, str]]  # (source key, target key)
    dropped: list[str]  # keys the target does not take

    def summary(self, source: Platform, target: Platform) -> str:
        parts = [f"{old} becomes {new}" for old, new in self.renamed]
        parts += [f"{key} is left out ({target.name} has no such setting)" for key in self.dropped]
        return "; ".join(parts) or f"no key needs translating from {source.name} to {target.name}"


def translate_config(config: dict, source: Platform, target: Platform) -> Translation:
    """The config a `target` server takes for a container configured on `source`: renamed
    keys under their new names, keys only the source has left out, and the source's own
    bookkeeping (`volatile.*`, except what both keep) left for the target to make."""
    if source is target:
        return Translation(dict(config), [], [])
    target_names = {neutral: key for key, neutral in target.renamed_keys.items()}
    out: dict[str, str] = {}
    renamed, dropped = [], []
    for key, value in config.items():
        if key.startswith("volatile."):
            if key in SHARED_VOLATILE or DEVICE_VOLATILE.match(key):
                out[key] = value
            continue
        if key in source.own_keys:
            dropped.append(key)
            continue
        neutral = source.renamed_keys.get(key)
        if neutral is not None and neutral in target_names:
            renamed.append((key, target_names[neutral]))
            key = target_names[neutral]
        out[key] = value
    return Translation(out, renamed, dropped)
