"""Which LXD endpoints the panel will talk to: a known LXD or Incus unix socket, or
https://address:port where the address is not the panel machine's own loopback, a link-local
address, a cloud metadata service, or a number dressed up as a host name.

LXD hosts usually live on private networks (10/8, 172.16/12, 192.168/16, fc00::/7), so those
stay allowed. An administrator allows more with PANEL_ALLOWED_HOST_NETWORKS (addresses or
networks) and PANEL_LOCAL_LXD_SOCKETS (socket paths).

Host names are not resolved here: an answer now says nothing about the address a worker
connects to later (DNS can change in between), and enrolment pins the server certificate the
administrator confirmed, so a name that later points elsewhere meets a certificate mismatch,
not a trusted panel. Names that mean this machine or a metadata service are refused as they
are written (docs/security.md).
"""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SOCKET_NAME = "unix.socket"  # what LXD and Incus call their socket, in every layout
LOOPBACK_NAMES = re.compile(
    r"^(?:localhost|localhost\.localdomain|ip6-localhost|ip6-loopback|.+\.localhost)$"
)
METADATA_NAMES = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
}
METADATA_ADDRESSES = {
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
}
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# WHATWG URL parsing (browsers, curl) reads a host whose last label is a number as IPv4:
# 2130706433, 0x7f000001, 017700000001 and 127.1 are all 127.0.0.1.
NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")


def socket_refusal(path: str) -> str:
    """Why this unix socket path is not accepted, or ''."""
    if path in settings.LOCAL_LXD_SOCKETS:
        return ""
    known = ", ".join(settings.LOCAL_LXD_SOCKETS) or "none"
    if path.rsplit("/", 1)[-1] != SOCKET_NAME:
        return (
            f"{path} is not an LXD or Incus socket (they are named {SOCKET_NAME}). "
            f"Known sockets: {known}."
        )
    return (
        f"{path} is not one of the LXD or Incus sockets this panel knows ({known}); an "
        "administrator adds it to PANEL_LOCAL_LXD_SOCKETS."
    )


def host_refusal(host: str) -> str:
    """Why https://<host> is not accepted, or '' (private addresses and names are)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return name_refusal(host.lower().rstrip("."))
    return address_refusal(address)


def name_refusal(name: str) -> str:
    if NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        return (
            f"{name!r} is a number, not a host name: write an IPv4 address as four decimal "
            "numbers without leading zeros, such as 10.0.0.5."
        )
    if LOOPBACK_NAMES.match(name):
        return f"{name!r} is this machine itself (loopback). " + ALLOW_HINT
    if name in METADATA_NAMES:
        return f"{name!r} is a cloud metadata service, not an LXD host."
    return ""


ALLOW_HINT = "An administrator allows such addresses with PANEL_ALLOWED_HOST_NETWORKS."


def address_refusal(address: IPAddress) -> str:
    allowed = settings.ALLOWED_HOST_NETWORKS
    if any(address in ipaddress.ip_network(network, strict=False) for network in allowed):
        return ""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        refusal = address_refusal(embedded)
        return f"{address} carries {embedded}: {refusal}" if refusal else ""
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata service, not an LXD host."
    for refused, words in (
        (address.is_loopback, "is this machine itself (loopback)"),
        (address.is_link_local, "is a link-local address"),
        (address.is_unspecified or address in THIS_NETWORK, "is not a host's address"),
        (address.is_multicast, "is a multicast address"),
        (address.is_reserved, "is a reserved address"),
    ):
        if refused:
            return f"{address} {words}. {ALLOW_HINT}"
    return ""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
