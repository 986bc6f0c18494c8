"""A move between LXD and Incus: the stopped container goes as a backup, exported on the
source, translated on the way through the worker and imported on the target
(panel/lxd/backups.py says why not the migration API). Its config, devices, profiles and
snapshots go with it; keys the target takes under another name are renamed, keys it does not
have are left out, and CRIU images are left out (they hold the source platform's mounts,
which the target cannot restore: docs/platforms.md). The steps around it (stop, start,
verify, clean up) are the migration's own.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from panel import lxd
from panel.operations.recovery import remove_partial_target
from panel.operations.runner import OperationFailed

if TYPE_CHECKING:
    from panel.operations.migration import Migration


def crossing(migration: Migration) -> bool:
    """Do the two hosts run different platforms (LXD and Incus)?"""
    return migration.source_host.platform is not migration.target_host.platform


class BackupTransfer:
    """Moves the stopped container from one platform to the other and records the phase."""

    def __init__(self, migration: Migration) -> None:
        self.migration = migration
        self.source, self.target = migration.source, migration.target
        self.backup = f"panel-move-{migration.operation.pk}"

    def run(self, live: bool = False) -> None:
        m = self.migration
        if live:  # pre-flight blocks every CRIU strategy between the two platforms
            raise OperationFailed("A live move between LXD and Incus is not offered.")
        source, target = m.source_host.platform, m.target_host.platform
        begin = time.monotonic()
        m.source.enter(
            "exporting",
            f"Exporting {m.name} with its snapshots from {source.name} on {m.source_host.name}.",
        )
        state = m.source.follow(lxd.start_backup(m.source.target, m.name, self.backup))
        if state is not None and state.status != "Success":
            raise self.failed("The export on the source failed", state.error, exported=False)
        rewrite = lxd.Rewrite(source, target)
        try:
            self.copy(rewrite)
        finally:
            self.delete_backup()
        m.timeline.phase("transfer (export, translate, import)", begin, time.monotonic())
        m.operation.result["translation"] = self.outcome(rewrite)
        m.operation.log(self.outcome(rewrite), "transferring")

    def copy(self, rewrite: lxd.Rewrite) -> None:
        m = self.migration
        m.target.enter(
            "importing",
            f"Importing {m.new_name} into {rewrite.target.name} on {m.target_host.name}, its "
            f"config translated from {rewrite.source.name}'s.",
        )
        response = lxd.open_backup(m.source.target, m.name, self.backup)
        try:
            tarball = lxd.translated(response.iter_content(1 << 20), rewrite)
            pool = m.params.get("pool", "")
            operation = lxd.start_import(m.target.target, tarball, rewrite.target, m.new_name, pool)
            state = m.target.follow(operation)
        except lxd.LXDError as error:
            raise self.failed("The import on the target failed", str(error)) from error
        finally:
            response.close()
        if state is not None and state.status != "Success":
            raise self.failed("The import on the target failed", state.error)

    def delete_backup(self) -> None:
        """The backup is a full copy on the source's disk: never leave it there."""
        m = self.migration
        try:
            m.source.follow(lxd.start_delete_backup(m.source.target, m.name, self.backup))
        except lxd.LXDError as error:
            m.operation.log(
                f"Could not delete the backup {self.backup} of {m.name} on "
                f"{m.source_host.name}: {error}. Delete it there "
                f"(`{m.source_host.platform.cli} query -X DELETE "
                f"/1.0/instances/{m.name}/backups/{self.backup}`)."
            )

    def failed(self, what: str, error: str, exported: bool = True) -> OperationFailed:
        """Nothing moved: remove a half-made copy; the original stays, stopped."""
        m = self.migration
        if exported:
            with contextlib.suppress(lxd.LXDError):
                remove_partial_target(m)
        status = (lxd.instance_status(m.source.target, m.name) or "gone").upper()
        return OperationFailed(
            f"{what}; the original is on {m.source_host.name} ({status}), unchanged: start "
            "it there if it should run.",
            error,
            f"on {m.source_host.name}, {status}",
        )

    @staticmethod
    def outcome(rewrite: lxd.Rewrite) -> str:
        source, target = rewrite.source, rewrite.target
        translation = lxd.Translation({}, sorted(rewrite.renamed), sorted(rewrite.dropped))
        words = f"Config translated for {target.name}: {translation.summary(source, target)}."
        if rewrite.stateless:
            words += (
                f" Left without CRIU images ({target.name} cannot restore {source.name}'s): "
                f"{', '.join(rewrite.stateless)}."
            )
        return words
