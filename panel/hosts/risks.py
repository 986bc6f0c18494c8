"""Checkpoint risk assessment from a container's expanded config and devices.

The checkpoint/restore announcement warns that device passthrough, complex network services
and special storage are likely to fail, and liblxc refuses to dump NICs other than veth,
macvlan or none. Pure logic: shown before any stateful action.
"""

from __future__ import annotations

from dataclasses import dataclass

PASSTHROUGH_TYPES = {
    "gpu", "usb", "unix-char", "unix-block", "unix-hotplug", "pci", "infiniband", "tpm",
}  # fmt: skip
# LXD nictypes that give the container a veth pair (or a macvlan), which liblxc can dump.
DUMPABLE_NICTYPES = {"bridged", "p2p", "routed", "ovn", "macvlan"}

PASSTHROUGH = "Device passthrough: the announcement warns such containers are likely to fail."
EXTRA_DISK = "An extra disk: special storage configurations are likely to fail."
NIC = "liblxc refuses to dump NICs other than veth, macvlan or none."
PROXY = "A proxy device runs a helper outside the container: complex network services fail."
NESTING = "Nesting is on: nested containers and their mounts are often impossible to dump."
PRIVILEGED = "A privileged container: restored with host privileges; mismatches fail at restore."
RAW_LXC = "Custom LXC configuration (raw.lxc) may hold things CRIU cannot dump."
IDMAPPED = (
    "Its root filesystem is an idmapped mount (its files are not shifted on disk: "
    "volatile.last_state.idmap is empty while it has an idmap). CRIU cannot restore such a "
    "container (`Can't open fake fifo ... Permission denied`): a checkpoint taken now "
    "would not restore. On Incus, set INCUS_IDMAPPED_MOUNTS_DISABLE=1 for incusd and "
    "restart the container."
)
NO_IDMAP = ("", "[]")


@dataclass(frozen=True)
class Risk:
    """One reason a checkpoint of this container may fail."""

    subject: str
    reason: str


def checkpoint_risks(config: dict, devices: dict) -> list[Risk]:
    risks = [
        risk for name, device in sorted(devices.items()) for risk in device_risks(name, device)
    ]
    if config.get("security.nesting") == "true":
        risks.append(Risk("security.nesting", NESTING))
    if config.get("security.privileged") == "true":
        risks.append(Risk("security.privileged", PRIVILEGED))
    if config.get("raw.lxc"):
        risks.append(Risk("raw.lxc", RAW_LXC))
    if idmapped_rootfs(config):
        risks.append(Risk("root filesystem", IDMAPPED))
    return risks


def idmapped_rootfs(config: dict) -> bool:
    """A container with an idmap whose files on disk were never shifted to it: the server
    mounts its root filesystem idmapped (Incus does where the kernel allows)."""
    return (
        config.get("volatile.idmap.current", "") not in NO_IDMAP
        and config.get("volatile.last_state.idmap", "") in NO_IDMAP
        and config.get("security.privileged") != "true"
    )


def device_risks(name: str, device: dict) -> list[Risk]:
    kind = device.get("type", "")
    if kind in PASSTHROUGH_TYPES:
        return [Risk(f"device {name} ({kind})", PASSTHROUGH)]
    if kind == "disk" and device.get("path") != "/":
        return [Risk(f"device {name} (disk at {device.get('path', '?')})", EXTRA_DISK)]
    if kind == "nic":
        nictype = device.get("nictype") or ("bridged" if device.get("network") else "")
        if nictype not in DUMPABLE_NICTYPES:
            return [Risk(f"device {name} (nic {nictype or 'unknown'})", NIC)]
    if kind == "proxy":
        return [Risk(f"device {name} (proxy)", PROXY)]
    return []
