"""Bug bundles from the lab's real LXD, real CRIU and the real agents, through the web client
and a real worker: a failing checkpoint, a failed migration, a silent agent."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from django.conf import settings

from panel.models import Bundle, Host, Instance, Operation
from tests.conftest import ROOT, wait_for
from tests.lab_tools import (
    lxc,
    running_counter,
    set_criu,
)
from tests.test_operations_lab import enroll, operate

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PLANTED_ENV = "planted-env-Zq81xx"
PLANTED_USER_DATA = "planted-userdata-Kp27yy"
PLANTED_KEY = "MIIplantedKeyMaterialWw93zz"
HOST_LEVEL = ["lxc-info.yaml", "dmesg.txt", "mountinfo.txt", "uname.txt", "lxd.log",
              "lxd-bridge", "criu-check.txt"]  # fmt: skip


@pytest.fixture
def counter(lab, lab_agents):
    """A running counter container on host1 with planted secrets, both hosts enrolled."""
    host1 = lab["hosts"][0]
    with running_counter(lab, host1, "bundle", at_least=2) as name:
        lxc(host1, "config", "set", name, f"environment.DB_PASSWORD={PLANTED_ENV}")
        lxc(host1, "config", "set", name, "user.user-data",
            f"#cloud-config\npassword: {PLANTED_USER_DATA}\n")  # fmt: skip
        planted_log = Path(host1["lxd_dir"]).parent / "log" / name / "planted.log"
        planted_log.write_text(
            f"-----BEGIN PRIVATE KEY-----\n{PLANTED_KEY}\n-----END PRIVATE KEY-----\n"
        )
        host = enroll(host1)
        enroll(lab["hosts"][1])
        yield Instance.objects.get(host=host, name=name)


def ready(bundle_filter: dict, timeout: float = 90) -> Bundle:
    return wait_for(
        lambda: (
            Bundle.objects.exclude(status=Bundle.Status.COLLECTING).filter(**bundle_filter).first()
        ),
        timeout=timeout,
        what=f"a finished bundle for {bundle_filter}",
    )


def download(client, bundle: Bundle) -> dict[str, bytes]:
    assert bundle.status == Bundle.Status.READY, bundle.error
    response = client.get(f"/bundles/{bundle.pk}/download/")
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names[0].endswith("/report.md") and names[1].endswith("/manifest.json")
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}


def check_manifest_accounts_for_everything(members: dict[str, bytes]) -> dict:
    manifest = json.loads(members["manifest.json"])
    by_name = {entry["name"]: entry for entry in manifest["items"]}
    for name, data in members.items():
        if name not in ("report.md", "manifest.json"):
            assert by_name[name]["status"] == "collected" and by_name[name]["bytes"] == len(data)
    for entry in manifest["items"]:
        assert entry["status"] == "collected" or entry["reason"], entry
    return by_name


def test_a_failed_checkpoint_on_stock_criu_gets_a_bundle_with_criu_s_real_error(
    celery_worker, admin_client, counter, lab
):
    host1 = lab["hosts"][0]
    set_criu(host1, "stock")
    operation = operate(admin_client, counter, "stateful_snapshot", snapshot="broken")
    assert operation.status == Operation.Status.FAILED
    bundle = ready({"operation": operation, "automatic": True})
    members = download(admin_client, bundle)
    everything = b"".join(members.values())
    for planted in (PLANTED_ENV, PLANTED_USER_DATA, PLANTED_KEY):
        assert planted.encode() not in everything, planted
    by_name = check_manifest_accounts_for_everything(members)
    dump_logs = [n for n in members if "/logs/snapshot_dump_" in n]
    assert dump_logs, sorted(members)
    assert b"Error (criu/" in members[sorted(dump_logs)[-1]]  # CRIU 3.17.1's own words
    for item in HOST_LEVEL:
        assert f"host1/{item}" in by_name, item
    assert by_name["host1/lxd-bridge"]["reason"]  # not on LXD 5.0 hosts, and it says so
    c = counter.name
    assert by_name[f"host1/{c}/mountinfo.txt"]["status"] == "collected"
    assert by_name[f"host1/{c}/config-expanded.yaml"]["redacted"]["environment value"] == 1
    assert by_name[f"host1/var-log-lxd/{c}/planted.log"]["redacted"]["private key"] == 1
    report = members["report.md"].decode()
    assert f"lxc snapshot {c} broken --stateful" in report and "Checkpoint failed" in report
    print(f"bundle {bundle.size} bytes in {bundle.manifest['collection_seconds']} s")


def test_a_failed_migration_bundle_holds_both_hosts_items_and_checkpoint_images(
    celery_worker, admin_client, counter, lab
):
    lxc(lab["hosts"][0], "snapshot", counter.name, "cp0", "--stateful")
    hosts = {host.name: host for host in Host.objects.all()}
    operation = Operation.objects.create(
        kind="migrate", instance=counter, instance_name=counter.name, source_host=hosts["host1"],
        target_host=hosts["host2"], status=Operation.Status.FAILED,
        outcome="Migration failed.", error="Error: migration restore failed",
    )  # fmt: skip
    response = admin_client.post(f"/operations/{operation.pk}/bundle/")
    assert response.status_code == 302
    bundle = ready({"operation": operation})
    by_name = check_manifest_accounts_for_everything(download(admin_client, bundle))
    for host in ("host1", "host2"):
        for item in HOST_LEVEL:
            if item != "lxd-bridge":
                assert by_name[f"{host}/{item}"]["status"] == "collected", (host, item)
    assert "no container named" in by_name[f"host2/{counter.name}/lxc-info.yaml"]["reason"]
    assert f"lxc move host1:{counter.name} host2:" in bundle.report
    checkpoint = next(c for c in bundle.manifest["checkpoints"] if c["label"] == "snapshot cp0")
    assert checkpoint["stats"]["dump"]["pages_written"] > 0
    assert "pages-1.img" in checkpoint["tree"]
    page = admin_client.get(f"/operations/{operation.pk}/").content.decode()
    assert "pages-1.img" in page and "CRIU dump: frozen" in page


def test_a_bundle_with_an_agent_stopped_completes_and_says_what_is_missing(
    celery_worker, admin_client, counter, lab
):
    lab_py = str(ROOT / "lab" / "lab.py")
    subprocess.run(["python3", lab_py, "agents", "stop", "--host", "host1"], check=True)
    try:
        response = admin_client.post(f"/containers/{counter.pk}/bundle/")
        assert response.status_code == 302
        bundle = ready({"instance": counter}, timeout=120)
        by_name = check_manifest_accounts_for_everything(download(admin_client, bundle))
    finally:
        subprocess.run(
            ["python3", lab_py, "agents", "start", "--host", "host1", "--python", sys.executable,
             "--redis-url", settings.CELERY_BROKER_URL], check=True,
        )  # fmt: skip
    for item in ["dmesg.txt", "mountinfo.txt", "uname.txt", "lxd.log", "criu-check.txt",
                 f"var-log-lxd/{counter.name}"]:  # fmt: skip
        assert by_name[f"host1/{item}"]["status"] == "missing"
        assert "no agent answered" in by_name[f"host1/{item}"]["reason"]
    assert by_name["host1/lxc-info.yaml"]["status"] == "collected"
    assert by_name[f"host1/{counter.name}/mountinfo.txt"]["status"] == "collected"
    assert "no agent answered" in bundle.report
