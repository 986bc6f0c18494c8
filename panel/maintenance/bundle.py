"""One bug-report bundle for a maintenance that did not end as planned: its report (the
plan's outcome per container) and, inside, each failed child's own bundle (already redacted
by panel/bundles/collect.py), unpacked under a folder named after the child. The children's
bundles are collected as they fail; this waits for them, within WAIT_SECONDS."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile

from django.core.files.base import ContentFile
from django.utils import timezone

from panel.bundles import pack
from panel.bundles.collect import record_build_failure
from panel.bundles.models import Bundle
from panel.operations.models import Operation
from panel.redaction import policy

logger = logging.getLogger(__name__)
WAIT_SECONDS = 600  # after the parent ended, for its failed children's bundles
RETRY_SECONDS = 5
FAILED = (Operation.Status.FAILED, Operation.Status.INTERRUPTED)


def collect(operation_id: int) -> bool:
    """Build the parent's bundle once its failed children's are done; False: not yet."""
    parent = Operation.objects.filter(pk=operation_id, kind=Operation.Kind.MAINTENANCE).first()
    if parent is None or parent.bundles.filter(automatic=True).exists():
        return True
    failed = list(parent.children.filter(status__in=FAILED).order_by("pk"))
    theirs = {child.pk: child.bundles.filter(automatic=True).first() for child in failed}
    unfinished = [b for b in theirs.values() if b is None or b.status == Bundle.Status.COLLECTING]
    waited = (timezone.now() - (parent.finished_at or timezone.now())).total_seconds()
    if unfinished and waited < WAIT_SECONDS:
        return False
    bundle = Bundle.objects.create(
        operation=parent, instance_name=parent.instance_name, automatic=True
    )
    try:
        build(bundle, parent, failed, theirs)
    except Exception as error:
        record_build_failure(bundle, error)
    return True


def build(bundle: Bundle, parent: Operation, failed: list[Operation], theirs: dict) -> None:
    items: list[pack.Item] = []
    for child in failed:
        items += child_items(child, theirs.get(child.pk))
    entries = [pack.manifest_entry(item) for item in items]
    # The children's items were redacted when their bundles were built; the report quotes
    # their errors, so it goes through the same policy, knowing each container's secrets.
    redactor = policy()
    for child in failed:
        if child.instance_id is not None and child.instance is not None:
            redactor.learn_config(child.instance.expanded_config)
    report = redactor.text(parent_report(parent, failed, theirs))
    manifest = {
        "bundle": bundle.pk,
        "created_at": bundle.created_at.isoformat(),
        "operation": parent.pk,
        "kind": "maintenance",
        "children": [child.pk for child in failed],
        "summary": pack.summary(entries),
        "items": entries,
    }
    folder = f"lxd-bundle-{bundle.pk}"
    data = pack.build_tarball(folder, report, manifest, items, bundle.created_at.timestamp())
    bundle.file.save(f"{folder}.tar.gz", ContentFile(data), save=False)
    bundle.size, bundle.sha256 = len(data), hashlib.sha256(data).hexdigest()
    bundle.manifest, bundle.report = manifest, report
    bundle.status, bundle.finished_at = Bundle.Status.READY, timezone.now()
    bundle.save()


def child_folder(child: Operation) -> str:
    return pack.member_name(f"{child.instance_name}-operation-{child.pk}")


def child_items(child: Operation, bundle: Bundle | None) -> list[pack.Item]:
    """The child's bundle, member by member, under its own folder; or why it is missing."""
    folder, source = child_folder(child), f"operation #{child.pk}'s bundle"
    host = getattr(child.source_host, "name", "")
    if bundle is None or bundle.status != Bundle.Status.READY or not bundle.file:
        why = (
            "no bundle was made for it"
            if bundle is None
            else f"its bundle #{bundle.pk} is {bundle.get_status_display().lower()}"
            + (f": {bundle.error}" if bundle.error else "")
        )
        return [pack.missing(f"{folder}/", host, source, why)]
    items = []
    with bundle.file.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            inner = member.name.split("/", 1)[-1]  # below the child's own lxd-bundle-N/
            name = f"{folder}/" + pack.member_name(*inner.split("/"))
            items.append(pack.Item(name=name, host=host, source=f"{source} #{bundle.pk}",
                                   content=extracted.read()))  # fmt: skip
    return items


def parent_report(parent: Operation, failed: list[Operation], theirs: dict) -> str:
    """report.md: the maintenance, its outcome, every container's end, then each failed
    child with its error and where its own bundle sits in this one."""
    out = io.StringIO()
    host = getattr(parent.source_host, "name", "?")
    out.write(f"# LXD bug report: maintenance of {host}, operation #{parent.pk}\n\n")
    out.write(f"**Status:** {parent.get_status_display()}\n\n**Outcome:** {parent.outcome}\n\n")
    out.write("## Every container\n\n| container | action | status | where now |\n")
    out.write("| --- | --- | --- | --- |\n")
    for row in parent.result.get("containers", []):
        cells = [row["name"], row["action"] or "-", row["status"], row["where"]]
        out.write("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |\n")
    for child in failed:
        bundle = theirs.get(child.pk)
        out.write(f"\n## {child.instance_name}: operation #{child.pk} ({child.get_kind_display()})"
                  f", {child.get_status_display()}\n\n{child.outcome}\n\n")  # fmt: skip
        if child.error:
            out.write("```\n" + child.error.strip() + "\n```\n\n")
        where = f"`{child_folder(child)}/`" if bundle and bundle.file else "not included"
        out.write(f"Its own bundle (report.md, manifest.json, both hosts' items): {where}.\n")
    return out.getvalue()
