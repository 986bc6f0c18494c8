"""The panel's LXD client identity lives in the database, its key sealed, and each process
reads it into files of its own; an install that kept it on disk keeps its identity."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from panel import lxd
from panel.hosts import identity
from panel.hosts.connection import target_for
from panel.models import ClientIdentity
from tests.conftest import ROOT
from tests.helpers import child_database_url, make_host


@pytest.fixture
def cert_dir(settings, tmp_path):
    settings.PANEL_CLIENT_CERT_DIR = tmp_path / "client-cert"
    identity._materialised.clear()
    yield settings.PANEL_CLIENT_CERT_DIR
    identity._materialised.clear()


@pytest.mark.django_db
def test_the_identity_is_made_once_and_its_key_is_never_stored_in_clear(cert_dir):
    first = identity.client_identity()
    assert identity.client_identity().pk == first.pk
    assert ClientIdentity.objects.count() == 1
    assert "PRIVATE KEY" not in first.sealed_key and "BEGIN CERTIFICATE" in first.certificate
    assert first.fingerprint == lxd.certificate_fingerprint(first.certificate)
    assert not cert_dir.exists(), "nothing is written to the data folder"


@pytest.mark.django_db
def test_pylxd_gets_private_in_memory_files_of_this_process(cert_dir):
    cert_path, key_path = target_for(make_host("h1")).client_cert
    assert cert_path.startswith("/proc/self/fd/") and key_path.startswith("/proc/self/fd/")
    assert Path(cert_path).read_text() == identity.client_identity().certificate
    assert "PRIVATE KEY" in Path(key_path).read_text()
    assert stat.S_IMODE(os.fstat(int(key_path.rsplit("/", 1)[1])).st_mode) == 0o600
    assert identity.client_cert_files() == (cert_path, key_path)  # once per process
    assert not cert_dir.exists(), "nothing is written to the data folder"


@pytest.mark.django_db
def test_an_identity_kept_in_files_by_an_older_install_is_imported_and_its_key_deleted(cert_dir):
    cert_path, key_path = lxd.ensure_client_certificate(cert_dir)
    enrolled = lxd.certificate_fingerprint(Path(cert_path).read_text())
    assert identity.client_identity().fingerprint == enrolled
    assert not Path(key_path).exists(), "the key in clear is gone once the database holds it"
    files = identity.client_cert_files()
    assert Path(files[1]).read_text().startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.django_db
def test_another_key_cannot_open_it_and_says_which_setting_to_align(cert_dir, settings):
    identity.client_identity()
    identity._materialised.clear()
    settings.SECRET_KEY = "another-secret-key-of-another-machine-0123456789"
    with pytest.raises(identity.IdentityUnreadable, match="set the same PANEL_SECRET_KEY"):
        identity.client_cert_files()
    settings.PANEL_IDENTITY_KEY = "a-dedicated-identity-key-0123456789abcdef"
    with pytest.raises(identity.IdentityUnreadable, match="set the same PANEL_IDENTITY_KEY"):
        identity.client_cert_files()


@pytest.mark.django_db(transaction=True)
def test_another_process_with_its_own_data_folder_uses_the_same_identity(cert_dir, tmp_path):
    mine = identity.client_identity().fingerprint
    code = (
        "from pathlib import Path; from panel.hosts.identity import client_cert_files, "
        "client_identity; cert, key = client_cert_files(); "
        "print(client_identity().fingerprint, Path(key).read_text().count('PRIVATE KEY'))"
    )
    env = {**os.environ, "PANEL_DATABASE_URL": child_database_url(),
           "PANEL_DATA_DIR": str(tmp_path / "elsewhere")}  # fmt: skip
    from django.conf import settings

    env["PANEL_SECRET_KEY"] = settings.SECRET_KEY
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [mine, "2"]
    assert not (tmp_path / "elsewhere" / "client-cert" / "client.key").exists()


@pytest.mark.django_db(transaction=True)
def test_doctor_on_a_machine_with_another_secret_key_says_which_setting_to_align(cert_dir):
    identity.client_identity()
    env = {**os.environ, "PANEL_DATABASE_URL": child_database_url(),
           "PANEL_SECRET_KEY": "the-key-of-a-machine-set-up-differently-0123"}  # fmt: skip
    result = subprocess.run([sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert "FAIL client identity: " in result.stdout
    assert "set the same PANEL_SECRET_KEY on every machine" in result.stdout
