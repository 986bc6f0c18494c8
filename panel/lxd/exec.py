"""Reading a file inside a running container (the only exec the panel does), bounded in time
and size.

LXD 5.0.2 refuses to cancel an exec that records its output ("This operation can't be
cancelled", verified on the lab), and recording writes everything the command prints onto
the host's disk before the panel reads a byte. So the panel runs it with websockets instead:
stdout is read as it arrives and capped while it is read, and a command that prints too much
or runs too long is killed through LXD's control websocket (SIGKILL), which ends LXD's
operation. The server's certificate is checked against the pinned one before the websocket
handshake sends the operation's secret.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ws4py.client import WebSocketBaseClient
from ws4py.exc import HandshakeError

from panel.lxd.certificates import certificate_fingerprint
from panel.lxd.connection import Target, reused_client
from panel.lxd.errors import LXDError, lxd_error
from panel.lxd.operations import wait_operation

# The only files the panel ever reads inside a container: it never runs arbitrary commands.
READABLE_IN_CONTAINER = ("/proc/self/mountinfo", "/proc/1/status")
STDERR_MAX_BYTES = 16 * 1024
KILL_WAIT_SECONDS = 5
SIGKILL = 9


@dataclass(frozen=True)
class ContainerRead:
    """What `cat <path>` printed (at most the cap), and whether the cap cut it."""

    text: str
    truncated: bool


def container_mountinfo(target: Target, name: str, max_bytes: int, timeout: int = 10):
    """`lxc exec <name> -- cat /proc/self/mountinfo`, for the bug bundle."""
    return read_in_container(target, name, "/proc/self/mountinfo", max_bytes, timeout)


def container_init_state(target: Target, name: str, timeout: int = 10) -> str:
    """The `State:` of the container's init, e.g. 'S (sleeping)'. 't (tracing stop)' means a
    tracer holds it: after a failed live migration that is CRIU's dump, still waiting in
    LXD's action script, while LXD reports the container as Running."""
    status = read_in_container(target, name, "/proc/1/status", 64 * 1024, timeout).text
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in status.splitlines()
            if line.startswith("State:")
        ),
        "",
    )


def read_in_container(
    target: Target, name: str, path: str, max_bytes: int, timeout: int = 10
) -> ContainerRead:
    """`cat <path>` in a running container: at most `max_bytes` of it, within `timeout`
    seconds; past either, the command is killed and LXD's operation ends."""
    if path not in READABLE_IN_CONTAINER:
        raise LXDError(f"The panel does not read {path} inside containers.")
    deadline = time.monotonic() + timeout
    operation_id, streams = _connected_exec(target, name, path, deadline)
    try:
        streams["0"].close()  # no input: cat reads its file
        output = streams["1"].read(max_bytes, deadline)
        errors = Received(bytearray(), cut=False, ended=False)
        if output.ended and not output.cut:
            errors = streams["2"].read(STDERR_MAX_BYTES, deadline)
        if output.cut or not output.ended or not errors.ended:
            streams["control"].send(json.dumps({"command": "signal", "signal": SIGKILL}))
        state = wait_operation(target, operation_id, seconds=KILL_WAIT_SECONDS)
    finally:
        for stream in streams.values():
            stream.close()
    text = output.data.decode(errors="replace")
    if not output.ended and not output.cut:
        raise LXDError(
            f"`cat {path}` in {name} did not finish in {timeout} s: the panel killed it"
            + ("." if state is None or state.finished else ", but LXD still runs it.")
        )
    if output.cut:
        return ContainerRead(text, truncated=True)
    if state is not None and state.status != "Success":
        raise LXDError(f"`cat {path}` in {name} failed: {state.error}")
    returned = (state.metadata or {}).get("return", 0) if state is not None else 0
    if returned != 0:
        why = errors.data.decode(errors="replace").strip()[:200]
        raise LXDError(f"`cat {path}` in {name} exited {returned}" + (f": {why}" if why else "."))
    return ContainerRead(text, truncated=False)


def _connected_exec(target: Target, name: str, path: str, deadline: float):
    """`cat <path>` started, its four websockets connected (LXD waits 5 s at most for all
    four). LXD has refused a websocket with a 500 now and then (seen once in a clean lab run,
    on a container running for seconds): the refused exec never ran, so it is started once
    more before the read is given up."""
    starts_left = 2
    while True:
        operation_id, fds = _start_exec(target, name, ["cat", path])
        streams = {fd: _Stream(target, operation_id, secret) for fd, secret in fds.items()}
        try:
            for stream in streams.values():
                stream.open(deadline)
            return operation_id, streams
        except LXDError:
            for stream in streams.values():
                stream.close()
            starts_left -= 1
            if not starts_left or time.monotonic() >= deadline:
                raise


def _start_exec(target: Target, name: str, command: list[str]) -> tuple[str, dict]:
    body = {
        "command": command,
        "environment": {},
        "interactive": False,
        "wait-for-websocket": True,
        "record-output": False,
    }
    try:
        response = reused_client(target).api.instances[name].exec.post(json=body)
    except Exception as error:
        raise lxd_error(error, target.endpoint) from error
    answer = response.json()
    fds = (answer.get("metadata") or {}).get("metadata", {}).get("fds") or {}
    if set(fds) != {"0", "1", "2", "control"}:
        raise LXDError(f"{target.endpoint} started no exec websockets for {name}.")
    return answer["operation"].rstrip("/").split("/")[-1], fds


@dataclass
class Received:
    data: bytearray
    cut: bool  # the cap was reached
    ended: bool  # LXD closed the stream: the command closed it or exited


class _Stream(WebSocketBaseClient):
    """One of the exec's websockets (stdin, stdout, stderr, control), connected only once the
    server's certificate matches the pinned one."""

    sock: socket.socket

    def __init__(self, target: Target, operation_id: str, secret: str) -> None:
        self.target = target
        if target.is_unix_socket:
            url = f"ws+unix://{target.endpoint}"
        else:
            parts = urlsplit(target.endpoint)
            url = f"wss://{parts.netloc}"
        super().__init__(url, exclude_headers=["origin"])
        self.resource = f"/1.0/operations/{operation_id}/websocket?secret={secret}"
        self.received = Received(bytearray(), cut=False, ended=False)
        self.limit = 0
        self.failure: Exception | None = None

    def open(self, deadline: float) -> None:
        self.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            self.connect()
        except (OSError, HandshakeError, ValueError) as error:
            raise LXDError(f"{self.target.endpoint}: the exec websocket failed: {error}") from None

    def connect(self) -> None:
        """ws4py's connect, with the TLS peer checked against the pinned certificate before
        the handshake (ws4py itself would not verify the server at all)."""
        if self.scheme == "wss":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # pinned below
            if self.target.client_cert:
                context.load_cert_chain(*self.target.client_cert)
            self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
            self._is_secure = True
        self.sock.connect(self.bind_addr)
        if isinstance(self.sock, ssl.SSLSocket):
            presented = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
            if presented != certificate_fingerprint(self.target.server_certificate):
                raise LXDError(f"{self.target.endpoint} presented another certificate.")
        self._write(self.handshake_request)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1024)
            if not chunk:
                raise HandshakeError("the server closed the connection during the handshake")
            response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        status_line, _, headers = head.partition(b"\r\n")
        self.process_response_line(status_line)
        self.protocols, self.extensions = self.process_handshake_header(headers)
        self.handshake_ok()
        if body:
            self.process(body)

    def read(self, limit: int, deadline: float) -> Received:
        """Everything LXD sends on this stream until it closes it, the cap is reached, or
        the deadline passes (then `ended` is False)."""
        self.limit = limit
        while not self.received.cut:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.received
            self.sock.settimeout(remaining)
            if not self.once():
                self.received.ended = self.failure is None or not isinstance(
                    self.failure, socket.timeout | TimeoutError
                )
                return self.received
        return self.received

    def received_message(self, message) -> None:
        room = self.limit - len(self.received.data)
        data = bytes(message.data or b"")
        self.received.data += data[: max(0, room)]
        if len(data) > room:
            self.received.cut = True

    def unhandled_error(self, error) -> None:
        self.failure = error

    def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            if not self.client_terminated:
                super().close(code, reason)
            self.close_connection()
        except OSError:
            pass  # already gone: nothing left to close
