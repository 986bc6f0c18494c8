"""Moving a stopped container between LXD and Incus: export a backup from one, rewrite its
config for the other on the way through, import it there.

The migration API cannot do it: it sends every snapshot's config from the source as it is,
and the target refuses a key it does not know (Incus: `Failed creating instance snapshot
record "c/s1": Unknown configuration key: security.devlxd`; LXD 5.0.2 refuses Incus's
`volatile.uuid.generation`, which Incus writes into every snapshot). A backup carries the
same configs in `backup/index.yaml` (and each `backup.yaml`), which the panel can translate
(panel/lxd/platforms.py) while the tarball streams from the source to the target through the
worker, never whole in memory or on disk.
"""

from __future__ import annotations

import io
import queue
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from panel.lxd.connection import Target, forget_client, reused_client
from panel.lxd.errors import LXDError, lxd_error
from panel.lxd.operations import _start
from panel.lxd.platforms import Platform, translate_config

CHUNK = 1 << 20
QUEUED_CHUNKS = 16  # at most this many MiB wait between the source's and the target's side


def start_backup(target: Target, name: str, backup: str) -> str:
    """Export the instance and its snapshots into a backup on its server; the operation id.
    Uncompressed: the worker rewrites it on the way through, and the hosts' CPUs need not
    compress what the target unpacks at once."""
    body = {
        "name": backup,
        "instance_only": False,
        "optimized_storage": False,
        "compression_algorithm": "none",
    }
    return _start(target, "post", f"/instances/{name}/backups", body)


def start_delete_backup(target: Target, name: str, backup: str) -> str:
    return _start(target, "delete", f"/instances/{name}/backups/{backup}", None)


def open_backup(target: Target, name: str, backup: str):
    """The backup's tarball as a stream (a requests response the caller closes)."""
    client = reused_client(target)
    try:
        return client.api.instances[name].backups[backup].export.get(stream=True, is_api=False)
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error


def start_import(target: Target, tarball: Iterator[bytes], platform: Platform, name: str,
                 pool: str) -> str:  # fmt: skip
    """Create the instance `name` on the target from a streamed backup; the operation id."""
    client = reused_client(target)
    headers = {"Content-Type": "application/octet-stream", f"{platform.header_prefix}name": name}
    if pool:
        headers[f"{platform.header_prefix}pool"] = pool
    try:
        response = client.api.instances.post(data=tarball, headers=headers)
    except Exception as error:
        forget_client(target)
        raise lxd_error(error, target.endpoint) from error
    operation = response.json().get("operation", "")
    if not operation:
        raise LXDError(f"{target.endpoint} did not start importing the backup.")
    return operation.rstrip("/").split("/")[-1]


# Timestamps stay strings: parsed and written back, YAML's would lose their RFC 3339 "T",
# which LXD and Incus then refuse (`parsing time "2026-12-01 11:43:54+00:00"`).
class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Rewrite:
    """What the translation changed, for the operation's log and outcome."""

    source: Platform
    target: Platform
    renamed: set[tuple[str, str]] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    # CRIU images hold the source platform's mounts, which the target cannot restore
    # (docs/platforms.md): stateful snapshots arrive as filesystem snapshots, a saved state
    # is discarded.
    stateless: list[str] = field(default_factory=list)

    def config(self, config: dict | None) -> dict:
        translation = translate_config(config or {}, self.source, self.target)
        self.renamed.update(translation.renamed)
        self.dropped.update(translation.dropped)
        return translation.config

    def document(self, doc: dict, label: str) -> None:
        """One instance or snapshot entry: its configs translated, its CRIU state dropped."""
        for key in ("config", "expanded_config"):
            if key in doc:
                doc[key] = self.config(doc[key])
        if doc.get("stateful"):
            doc["stateful"] = False
            if label not in self.stateless:
                self.stateless.append(label)

    def index(self, doc: dict) -> None:
        """backup/index.yaml (and each backup.yaml): the instance and its snapshots."""
        config = doc.get("config") or doc
        if "container" in config:
            self.document(config["container"], "the saved state (it starts afresh)")
        for snapshot in config.get("snapshots") or []:
            name = snapshot.get("name", "?")
            self.document(snapshot, f"snapshot {name} (now a filesystem snapshot)")


def is_state(name: str) -> bool:
    """A CRIU image of the instance's saved state (backup/container/state/...) or of a
    stateful snapshot (backup/snapshots/<name>/state/...)."""
    parts = name.strip("/").split("/")
    if parts[:2] == ["backup", "container"]:
        return parts[2:3] == ["state"]
    return parts[:2] == ["backup", "snapshots"] and parts[3:4] == ["state"]


def is_config(name: str) -> bool:
    """backup/index.yaml, or the backup.yaml beside the instance's or a snapshot's rootfs
    (never a file of that name inside a rootfs)."""
    parts = name.strip("/").split("/")
    return (
        parts == ["backup", "index.yaml"]
        or parts == ["backup", "container", "backup.yaml"]
        or (parts[:2] == ["backup", "snapshots"] and len(parts) == 4 and parts[3] == "backup.yaml")
    )


def translated(tarball: Iterator[bytes], rewrite: Rewrite) -> Iterator[bytes]:
    """The backup tarball with its configs rewritten and its CRIU images left out, as it
    streams: a helper thread reads the source's tarball and writes the new one into a
    bounded queue that this generator empties (the target's upload)."""
    chunks: queue.Queue = queue.Queue(maxsize=QUEUED_CHUNKS)
    failure: list[BaseException] = []
    abandoned = threading.Event()  # the upload ended early: the helper stops writing

    def produce() -> None:
        writer = _Writer(chunks, abandoned)
        try:
            with (
                tarfile.open(fileobj=_Reader(tarball), mode="r|*") as source,
                tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as out,
            ):
                for member in source:
                    if is_state(member.name):
                        continue
                    data = source.extractfile(member) if member.isfile() else None
                    if data is not None and is_config(member.name):
                        doc = yaml.load(data.read(), Loader=_Loader)  # noqa: S506 (safe loader)
                        rewrite.index(doc)
                        text = yaml.safe_dump(doc, default_flow_style=False).encode()
                        member.size, data = len(text), io.BytesIO(text)
                    out.addfile(member, data)
            writer.flush()
        except BaseException as error:  # handed to the consumer, which raises it
            failure.append(error)
        finally:
            writer.put(None)

    thread = threading.Thread(target=produce, name="backup-rewrite", daemon=True)
    thread.start()
    try:
        while (chunk := chunks.get()) is not None:
            yield chunk
    finally:
        abandoned.set()
        thread.join(timeout=30)
    if failure:
        raise LXDError(f"Rewriting the backup failed: {failure[0]}") from failure[0]


class _Reader(io.RawIOBase):
    """The export's chunks as a file tarfile can read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


class _Writer(io.RawIOBase):
    """A file tarfile writes into, handing chunks of about CHUNK bytes to the queue; it gives
    up once the consumer has gone."""

    def __init__(self, chunks: queue.Queue, abandoned: threading.Event) -> None:
        self.chunks, self.abandoned, self.buffer = chunks, abandoned, bytearray()

    def put(self, chunk: bytes | None) -> None:
        while not self.abandoned.is_set():
            try:
                self.chunks.put(chunk, timeout=1)
                return
            except queue.Full:
                continue
        if chunk is not None:
            raise LXDError("the target stopped reading the backup")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.put(bytes(self.buffer))
            self.buffer = bytearray()
