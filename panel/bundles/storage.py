"""Files in the database: a Django storage backend for bundles when the panel runs on more
than one machine.

A worker builds a bundle wherever it runs, and any web replica must serve it. The database is
already shared by all of them and already backed up; bundles are capped
(PANEL_BUNDLE_TOTAL_MAX_BYTES, 50 MiB by default) and deleted after the retention period, so
the table stays small. A download reads the one row into memory, as large as that cap.
"""

from __future__ import annotations

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.db import IntegrityError, transaction
from django.utils.deconstruct import deconstructible

from panel.bundles.models import StoredFile


@deconstructible
class DatabaseStorage(Storage):
    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode:
            raise ValueError("DatabaseStorage files are written with save(), not opened for it.")
        row = StoredFile.objects.filter(name=name).only("content").first()
        if row is None:
            raise FileNotFoundError(f"No stored file named {name!r}.")
        return ContentFile(bytes(row.content), name=name)

    def _save(self, name: str, content: File) -> str:
        data = b"".join(content.chunks()) if hasattr(content, "chunks") else content.read()
        while True:
            try:
                with transaction.atomic():
                    StoredFile.objects.create(name=name, content=data, size=len(data))
                return name
            except IntegrityError:  # taken meanwhile by another writer: pick another name
                name = self.get_available_name(name)

    def delete(self, name: str) -> None:
        StoredFile.objects.filter(name=name).delete()

    def exists(self, name: str) -> bool:
        return StoredFile.objects.filter(name=name).exists()

    def size(self, name: str) -> int:
        row = StoredFile.objects.filter(name=name).only("size").first()
        if row is None:
            raise FileNotFoundError(f"No stored file named {name!r}.")
        return row.size

    def url(self, name: str | None) -> str:
        raise NotImplementedError("Stored files are served by the views that check access.")
