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
    return risks


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
