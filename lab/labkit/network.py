"""The lab's bridge in the root namespace, and one network namespace per host."""

from __future__ import annotations

from .base import BRIDGE, BRIDGE_ADDRESS, PREFIX_LEN, log, run
from .host import Host


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(cmd, check=False).returncode == 0


def ensure_bridge() -> None:
    if not link_exists(BRIDGE):
        log(f"creating bridge {BRIDGE} {BRIDGE_ADDRESS}/{PREFIX_LEN}")
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if f" {BRIDGE_ADDRESS}/" not in addresses:
        run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def ensure_network(host: Host) -> None:
    if not host.netns_path.exists():
        run(["ip", "netns", "add", host.netns])
    if not link_exists(host.veth):
        # The peer lands in the host's namespace as eth0, like a real machine's NIC.
        if link_exists("eth0", host.netns):
            run(["ip", "-n", host.netns, "link", "del", "eth0"])
        run(
            [
                "ip",
                "link",
                "add",
                host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            ]
        )
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    addresses = run(["ip", "-n", host.netns, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f" {host.address}/" not in addresses:
        run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/{PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
