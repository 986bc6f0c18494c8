"""Bundles in the database (PANEL_FILE_STORAGE=database): what any worker wrote, any web
replica serves; the retention deletes the rows; nothing lands on the local disk."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from panel.bundles.requests import delete_old_bundles
from panel.models import Bundle, StoredFile
from tests.conftest import ROOT
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db

DATABASE_STORAGE = {
    "default": {"BACKEND": "panel.bundles.storage.DatabaseStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.fixture
def in_database(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"
    settings.STORAGES = DATABASE_STORAGE
    return settings.MEDIA_ROOT


def a_bundle(data: bytes) -> Bundle:
    instance = make_instance(make_host(f"h{Bundle.objects.count() + 1}"))
    bundle = Bundle.objects.create(
        instance=instance, instance_name=instance.name, status=Bundle.Status.READY
    )
    bundle.file.save(f"lxd-bundle-{bundle.pk}.tar.gz", ContentFile(data))
    return bundle


def test_a_bundle_saved_in_the_database_downloads_through_the_web(in_database, operator_client):
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    bundle = a_bundle(data)
    row = StoredFile.objects.get()
    assert row.name == bundle.file.name and row.size == len(data)
    assert not in_database.exists(), "nothing was written to the local disk"
    response = operator_client.get(f"/bundles/{bundle.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Disposition"].startswith("attachment;")


def test_two_bundles_with_one_name_get_two_rows(in_database):
    first = default_storage.save("bundles/x.tar.gz", ContentFile(b"one"))
    second = default_storage.save("bundles/x.tar.gz", ContentFile(b"two"))
    assert first != second
    assert default_storage.open(second).read() == b"two" and default_storage.size(first) == 3
    with pytest.raises(FileNotFoundError):
        default_storage.open("bundles/none.tar.gz")


def test_old_bundles_go_with_their_rows(in_database):
    old, recent = a_bundle(b"old"), a_bundle(b"new")
    Bundle.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=91))
    assert delete_old_bundles() == 1
    assert list(StoredFile.objects.values_list("name", flat=True)) == [recent.file.name]


def test_a_stored_name_that_walks_out_is_simply_not_found(in_database, operator_client):
    bundle = a_bundle(b"x")
    Bundle.objects.filter(pk=bundle.pk).update(file="../../etc/passwd")
    assert operator_client.get(f"/bundles/{bundle.pk}/download/").status_code == 404


@pytest.mark.parametrize(("value", "backend"), [("filesystem", "FileSystemStorage"),
                                                ("database", "DatabaseStorage")])  # fmt: skip
def test_the_setting_chooses_the_backend_and_refuses_others(value, backend):
    code = "from django.conf import settings; print(settings.STORAGES['default']['BACKEND'])"
    env = {"PANEL_FILE_STORAGE": value, "DJANGO_SETTINGS_MODULE": "panel.settings",
           "PATH": "/usr/bin:/bin", "PANEL_SECRET_KEY": "k" * 40}  # fmt: skip
    run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    result = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip().endswith(backend), result.stderr
    env["PANEL_FILE_STORAGE"] = "s3"
    result = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "PANEL_FILE_STORAGE" in result.stderr
