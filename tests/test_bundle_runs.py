"""Bundles are idempotent (issue 15, point 6): a redelivered or crashed bundle job finishes or
rebuilds the same bundle, never a second one; a bundle stuck in "collecting" is ended by the
bundle reconciler and can be collected again. The bundles are really built: their host does
not answer (nothing listens on its port), so every item is recorded as missing, with why."""

from __future__ import annotations

import datetime as dt
import tarfile

import pytest
from django.conf import settings
from django.utils import timezone

from panel.bundles.requests import automatic_bundle, request_bundle
from panel.bundles.runs import reconcile_bundles
from panel.bundles.tasks import collect_bundle, collect_operation_bundle
from panel.models import Bundle, Operation
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_operation() -> Operation:
    host = make_host("h1", endpoint="https://127.0.0.1:9", server_certificate="x")
    instance = make_instance(host)
    return Operation.objects.create(
        kind="stateful_snapshot", instance=instance, instance_name=instance.name,
        source_host=host, status=Operation.Status.FAILED, finished_at=timezone.now(),
        outcome="Checkpoint failed.",
    )  # fmt: skip


def long_ago() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.BUNDLE_STALE_SECONDS + 1)


def test_a_redelivered_automatic_bundle_job_builds_one_bundle(failed_operation):
    collect_operation_bundle(failed_operation.pk)
    collect_operation_bundle(failed_operation.pk)  # the same job, delivered again
    bundle = Bundle.objects.get()
    assert bundle.automatic and bundle.status == Bundle.Status.READY, bundle.error
    assert automatic_bundle(failed_operation.pk) == bundle
    with tarfile.open(bundle.file.path) as tarball:
        assert any(name.endswith("manifest.json") for name in tarball.getnames())
    items = {item["name"]: item for item in bundle.manifest["items"]}
    assert items["h1/lxc-info.yaml"]["status"] == "missing"
    assert "127.0.0.1:9" in items["h1/lxc-info.yaml"]["reason"]


def test_a_bundle_whose_worker_died_is_rebuilt_as_the_same_bundle(failed_operation):
    bundle = automatic_bundle(failed_operation.pk)
    Bundle.objects.filter(pk=bundle.pk).update(claimed_at=long_ago())  # its worker died
    collect_bundle(bundle.pk)  # the job, redelivered
    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.READY and Bundle.objects.count() == 1


def test_a_bundle_another_worker_is_building_is_not_built_twice(failed_operation):
    bundle = automatic_bundle(failed_operation.pk)
    Bundle.objects.filter(pk=bundle.pk).update(claimed_at=timezone.now())
    collect_bundle(bundle.pk)  # a duplicate of the job that is building it right now
    bundle.refresh_from_db()
    assert bundle.status == Bundle.Status.COLLECTING and not bundle.file


def test_a_bundle_stuck_collecting_is_ended_and_can_be_collected_again(
    failed_operation, admin_user
):
    stuck = automatic_bundle(failed_operation.pk)
    Bundle.objects.filter(pk=stuck.pk).update(claimed_at=long_ago())
    assert reconcile_bundles()[0] == 1
    stuck.refresh_from_db()
    assert stuck.status == Bundle.Status.FAILED
    assert "stopped before it finished" in stuck.error and "collect it again" in stuck.error
    again = request_bundle(admin_user, operation=failed_operation)
    assert again.pk != stuck.pk and again.status == Bundle.Status.COLLECTING


def test_a_failed_operation_whose_bundle_job_was_lost_gets_it_asked_for_again(failed_operation):
    assert reconcile_bundles() == (0, 1)
    automatic_bundle(failed_operation.pk)
    assert reconcile_bundles() == (0, 0)
