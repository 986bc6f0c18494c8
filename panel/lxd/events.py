"""LXD's event stream (`/1.0/events`): one websocket per host, lifecycle and operation events.

pylxd's own `Client.events()` sends the client certificate but never checks the server's
(ws4py's default is CERT_NONE), so this subscription pins it as every other request does:
the server's certificate must have the fingerprint the administrator confirmed, or the
connection is closed before anything is read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from ws4py.client import WebSocketBaseClient

from panel.lxd.certificates import certificate_fingerprint
from panel.lxd.connection import Target, connect
from panel.lxd.errors import LXDError, LXDUnreachable

logger = logging.getLogger(__name__)
EVENT_TYPES = ("lifecycle", "operation")


class _Listener(WebSocketBaseClient):
    def __init__(self, url: str, on_event: Callable[[dict], None], pinned: str, **kwargs) -> None:
        super().__init__(url, exclude_headers=["Origin"], **kwargs)
        self.on_event, self.pinned = on_event, pinned

    def handshake_ok(self) -> None:
        if self.pinned:
            offered = self.sock.getpeercert(binary_form=True) or b""
            if certificate_fingerprint_der(offered) != self.pinned:
                self.close_connection()
                raise LXDError(
                    f"{self.url}: the server's certificate is not the pinned one; "
                    "refusing its events (possible interception)."
                )

    def received_message(self, message) -> None:
        try:
            event = json.loads(message.data.decode("utf-8"))
        except ValueError:
            logger.warning("%s sent an event that is not JSON; ignored", self.url)
            return
        self.on_event(event)


def certificate_fingerprint_der(der: bytes) -> str:
    import hashlib

    return hashlib.sha256(der).hexdigest()


class EventStream:
    """A subscription: `run()` blocks, calling `on_event` for each event, until the
    connection ends (it returns) or `close()` is called from another thread."""

    def __init__(self, target: Target, on_event: Callable[[dict], None]) -> None:
        client = connect(target)  # also proves the server answers and trusts us
        url = client.websocket_url
        options = None
        pinned = ""
        if not target.is_unix_socket:
            options = {"certfile": target.client_cert[0], "keyfile": target.client_cert[1]} \
                if target.client_cert else {}  # fmt: skip
            pinned = certificate_fingerprint(target.server_certificate)
        self.listener = _Listener(url, on_event, pinned, ssl_options=options)
        self.listener.resource = "/1.0/events?" + urlencode({"type": ",".join(EVENT_TYPES)})
        try:
            self.listener.connect()
        except LXDError:
            raise
        except Exception as error:
            raise LXDUnreachable(f"{target.endpoint}: events: {error}") from error

    def run(self) -> None:
        self.listener.run()

    def close(self) -> None:
        try:
            self.listener.close()
        except Exception:  # already gone: closing is best effort
            logger.debug("closing an event stream that had ended", exc_info=True)


def instance_of(event: dict) -> tuple[str, str] | None:
    """What an event is about, as (instance name, action), or None for the rest.

    Lifecycle events name their object in `source` (/1.0/instances/c1, or its snapshots);
    an operation event lists the instances it touched, and counts once it has ended."""
    metadata = event.get("metadata") or {}
    if event.get("type") == "lifecycle":
        source = str(metadata.get("source", ""))
        action = str(metadata.get("action", ""))
        if source.startswith("/1.0/instances/"):
            return source.removeprefix("/1.0/instances/").split("/")[0].split("?")[0], action
        return None
    if event.get("type") == "operation" and metadata.get("status") in (
        "Success", "Failure", "Cancelled"
    ):  # fmt: skip
        for resource in (metadata.get("resources") or {}).get("instances") or []:
            return str(resource).removeprefix("/1.0/instances/").split("/")[0], "operation-ended"
    return None
