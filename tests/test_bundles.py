"""Bug bundles without LXD: redaction with planted secrets, caps, manifest, report, the
tarball, the pages and who may download. The lab tests collect real bundles."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from panel.bundles import pack
from panel.bundles import report as reports
from panel.bundles.requests import delete_old_bundles
from panel.hosts.capabilities import container_criu_support
from panel.models import Bundle, Operation
from panel.redaction import Redactor
from tests.helpers import make_host, make_instance

PLANTED = {
    "env": "planted-db-password-4711",
    "userdata": "planted-cloud-init-secret",
    "key": "MIIEplantedKEYmaterialAAAABBBBCCCC",
    "trust": "planted-trust-password-9",
    "admin": "corp-123456",
    "bearer": "plantedBearerToken0123456789",
}
TOKEN = base64.b64encode(
    json.dumps({"client_name": "x", "fingerprint": "ab", "secret": "planted-token-secret"}).encode()
).decode()


def planted_items() -> list[pack.Item]:
    config_yaml = (
        "config:\n"
        f"  environment.DB_PASSWORD: {PLANTED['env']}\n"
        "  user.user-data: |\n"
        "    #cloud-config\n"
        f"    password: {PLANTED['userdata']}\n"
        "    chpasswd: {expire: false}\n"
        "  limits.cpu: '2'\n"
        f"  core.trust_password: {PLANTED['trust']}\n"
    )
    log = (
        "lxc 20240101 INFO starting\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        f"{PLANTED['key']}\n"
        "-----END RSA PRIVATE KEY-----\n"
        f"lxc.environment = DB_PASSWORD={PLANTED['env']}\n"
        f"Authorization: Bearer {PLANTED['bearer']}\n"
        f"joined with token {TOKEN}\n"
        f"customer {PLANTED['admin']} mentioned\n"
        "(00.1) Error (criu/cr-dump.c:2093): Dumping FAILED.\n"
    )
    return [
        pack.Item("h1/c1/config-expanded.yaml", "h1", "LXD API", config_yaml),
        pack.Item("h1/c1/logs/lxc.log", "h1", "LXD API", log.encode()),
        pack.missing("h1/dmesg.txt", "h1", "agent: dmesg", "no agent answered within 15 s"),
    ]


def finalised(items, item_bytes=10_000, total_bytes=100_000, patterns=(r"corp-\d{6}",)):
    redactor = Redactor(patterns)
    return pack.finalise(items, redactor, pack.Limits(item_bytes, total_bytes)), redactor


def test_planted_secrets_appear_nowhere_in_the_tarball_and_the_manifest_counts_them():
    items = planted_items()
    entries, redactor = finalised(items)
    report = reports.render_report(
        reports.ReportContext("t", "c1", ["h1"], error=f"failed: {PLANTED['env']}"),
        entries,
        redactor,
    )
    data = pack.build_tarball("b", report, {"items": entries}, items, 0)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        everything = b"".join(tar.extractfile(m).read() for m in tar.getmembers())
    for secret in [*PLANTED.values(), "planted-token-secret", TOKEN]:
        assert secret.encode() not in everything, secret
    assert b"Dumping FAILED" in everything and b"limits.cpu: '2'" in everything
    assert entries[0]["redacted"] == {"cloud-init user data": 1, "environment value": 1,
                                      "trust password": 1}  # fmt: skip
    assert entries[1]["redacted"]["private key"] == 1
    assert entries[1]["redacted"]["trust token"] == 1
    assert entries[1]["redacted"]["admin pattern 1"] == 1


def test_structured_config_is_masked_before_it_becomes_text():
    counts: Counter = Counter()
    clean = Redactor().config(
        {"environment.X": "v", "cloud-init.user-data": "u", "limits.memory": "1GiB"}, counts
    )
    assert clean == {"environment.X": "[REDACTED]", "cloud-init.user-data": "[REDACTED]",
                     "limits.memory": "1GiB"}  # fmt: skip
    assert counts == {"environment value": 1, "cloud-init user data": 1}


def test_a_key_block_cut_by_a_cap_is_still_redacted():
    tail_only = "QUJDREVGR0g=\n-----END PRIVATE KEY-----\nafter"
    head_only = "before\n-----BEGIN EC PRIVATE KEY-----\nQUJDREVGR0g="
    for text in (tail_only, head_only):
        assert "QUJDREVGR0g" not in Redactor().text(text, Counter())


def test_hostile_strings_in_log_names_cannot_leave_the_bundle_folder():
    assert pack.member_name("h1", "../../etc/passwd") == "h1/_.._etc_passwd"
    assert ".." not in pack.member_name("..").split("/")
    item = pack.Item(pack.member_name("h1", "../x"), "h1", "s", "data")
    data = pack.build_tarball("b", "r", {}, [item], 0)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert all(m.name.startswith("b/") and ".." not in m.name.split("/")
                   for m in tar.getmembers())  # fmt: skip


def test_caps_keep_the_end_of_a_log_and_the_manifest_says_what_was_cut():
    log = ("x" * 5000 + "\nError (criu/cr-dump.c): the real error\n").encode()
    items = [pack.Item("h1/a.log", "h1", "s", log), pack.Item("h1/b.log", "h1", "s", log)]
    entries, _ = finalised(items, item_bytes=1000, total_bytes=1500)
    assert entries[0]["truncated"] and entries[0]["bytes"] == 1000
    assert items[0].content.endswith(b"the real error\n")
    assert entries[1]["bytes"] == 500 and "total size cap" in entries[1]["truncation"]


def test_the_manifest_has_every_item_with_its_hash_and_the_gaps_with_reasons():
    items = planted_items()
    entries, redactor = finalised(items)
    assert [e["status"] for e in entries] == ["collected", "collected", "missing"]
    assert entries[2]["reason"] == "no agent answered within 15 s" and entries[2]["sha256"] == ""
    assert len(entries[1]["sha256"]) == 64 and entries[1]["bytes"] == len(items[1].content)
    report = reports.render_report(reports.ReportContext("t", "c1", ["h1"]), entries, redactor)
    assert "| h1/dmesg.txt | h1 | no agent answered within 15 s |" in report


def test_the_report_gives_the_equivalent_lxc_command_versions_and_timeline():
    context = reports.ReportContext(
        "LXD bug report", "c1", ["host1", "host2"],
        command=reports.lxc_command("migrate", "c1", {}, "host1", "host2"),
        status="Failed", outcome="Migration failed.", error="Error: migration restore failed",
        versions={"host1": {"server": "LXD 5.0.2", "kernel": "6.1", "criu": "Version: 4.1.1"}},
        timeline=["12:00:00 [dumping] Dumping"],
    )  # fmt: skip
    report = reports.render_report(context, [], Redactor())
    assert "lxc move host1:c1 host2:" in report
    assert "| host1 | LXD 5.0.2 | 6.1 | Version: 4.1.1 |" in report
    assert "| host2 | unknown | unknown | unknown |" in report
    assert "Error: migration restore failed" in report and "[dumping] Dumping" in report
    assert reports.lxc_command("stateful_snapshot", "c1", {"snapshot": "s0"}, "h", "") == (
        "lxc snapshot c1 s0 --stateful"
    )


def test_checkpoint_listing_reads_like_tree_and_stats_say_where_the_time_went():
    tree = pack.checkpoint_tree("/state", [{"name": "core-1.img", "size": 2515},
                                              {"name": "pages-1.img", "size": 77824}])  # fmt: skip
    assert "├── core-1.img (2.5 KiB)" in tree and "└── pages-1.img (76.0 KiB)" in tree
    lines = pack.stats_summary({"dump": {"frozen_time": 184059, "pages_written": 19,
                                            "pages_scanned": 26}})  # fmt: skip
    assert lines[0].startswith("dump: frozen 184.1 ms")
    assert "pages written 19 of 26 scanned" in lines[0]


@pytest.mark.parametrize("value", ["[", '["(unclosed"]', '{"a": 1}'])
def test_bad_redaction_patterns_stop_the_start_naming_the_variable(value):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"DJANGO_SETTINGS_MODULE": "panel.settings", "PANEL_REDACT_PATTERNS": value,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PANEL_REDACT_PATTERNS" in result.stderr


def test_criu_facts_from_a_silent_agent_turn_unknown():
    old = (timezone.now() - dt.timedelta(hours=2)).isoformat()
    facts = {"server_version": "5.0.2", "driver": "lxc",
             "criu_check": {"ok": True, "output": "Looks good."},
             "agent_answered_at": old}  # fmt: skip
    state, reason = container_criu_support(facts)
    assert state == "unknown" and "no agent" in reason
    facts["agent_answered_at"] = timezone.now().isoformat()
    assert container_criu_support(facts)[0] == "yes"


# --- Pages -----------------------------------------------------------------------------------


def ready_bundle(**fields) -> Bundle:
    instance = make_instance(make_host(f"h{Bundle.objects.count() + 1}"))
    bundle = Bundle.objects.create(
        instance=instance, instance_name=instance.name, status=Bundle.Status.READY,
        report="# LXD bug report\n<script>alert(1)</script>",
        manifest={"summary": {"items": 1, "collected": 1, "missing": 0, "truncated": 0,
                              "redacted": 0},
                  "items": [{"name": "h1/dmesg.txt", "host": "h1", "source": "agent: dmesg",
                             "status": "collected", "reason": "", "bytes": 3, "sha256": "",
                             "truncated": False, "truncation": "", "redacted": {}}]},
        **fields,
    )  # fmt: skip
    bundle.file.save(f"bundle-{bundle.pk}.tar.gz", ContentFile(b"tarball-bytes"))
    return bundle


@pytest.mark.django_db
def test_viewers_see_report_and_manifest_but_cannot_download(viewer_client):
    bundle = ready_bundle()
    page = viewer_client.get(f"/bundles/{bundle.pk}/").content.decode()
    assert "# LXD bug report" in page and "h1/dmesg.txt" in page
    assert "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page
    assert f"/bundles/{bundle.pk}/download/" not in page
    assert viewer_client.get(f"/bundles/{bundle.pk}/download/").status_code == 403
    assert f"#{bundle.pk}" in viewer_client.get("/bundles/").content.decode()


@pytest.mark.django_db
def test_operators_download_the_tarball_as_an_attachment(operator_client):
    bundle = ready_bundle()
    response = operator_client.get(f"/bundles/{bundle.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content) == b"tarball-bytes"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/bundles/../settings.py/download/", "/bundles/1/download/../../../etc/passwd",
            "/bundles/%2e%2e%2fsecret_key/download/", "/bundles/999999/download/"],
)  # fmt: skip
def test_download_urls_take_only_a_primary_key(admin_client, url):
    ready_bundle()
    assert admin_client.get(url).status_code == 404


@pytest.mark.django_db
def test_strangers_are_sent_to_log_in(client):
    bundle = ready_bundle()
    response = client.get(f"/bundles/{bundle.pk}/download/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_viewers_cannot_ask_for_a_bundle(viewer_client):
    instance = make_instance(make_host())
    assert viewer_client.post(f"/containers/{instance.pk}/bundle/").status_code == 403
    assert not Bundle.objects.exists()


@pytest.mark.django_db
def test_an_operator_asks_for_a_bundle_and_follows_it(operator_client):
    instance = make_instance(make_host())
    response = operator_client.post(f"/containers/{instance.pk}/bundle/")
    bundle = Bundle.objects.get()
    assert response["Location"] == f"/bundles/{bundle.pk}/"
    assert bundle.status == Bundle.Status.COLLECTING and bundle.requested_by.username == "otto"
    again = operator_client.post(f"/containers/{instance.pk}/bundle/")
    assert again["Location"] == f"/bundles/{bundle.pk}/" and Bundle.objects.count() == 1
    fragment = operator_client.get(f"/bundles/{bundle.pk}/status/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'hx-trigger="every 1s"' in fragment.content.decode()
    Bundle.objects.filter(pk=bundle.pk).update(status=Bundle.Status.FAILED, error="boom")
    done = operator_client.get(f"/bundles/{bundle.pk}/status/", headers={"HX-Request": "true"})
    assert done.status_code == 286 and "boom" in done.content.decode()


@pytest.mark.django_db
def test_the_operation_page_offers_a_bundle_and_shows_checkpoint_images(operator_client):
    instance = make_instance(make_host())
    operation = Operation.objects.create(
        kind="stateful_snapshot", instance=instance, instance_name=instance.name,
        source_host=instance.host, status="succeeded", params={"snapshot": "s0"},
    )  # fmt: skip
    checkpoint = {"host": "h1", "label": "snapshot s0", "tree": "/state\n└── pages-1.img (76 KiB)",
                  "stats_lines": ["dump: frozen 184.1 ms"], "stats_note": ""}  # fmt: skip
    Bundle.objects.create(operation=operation, instance_name="c1", status="ready",
                          manifest={"checkpoints": [checkpoint]})  # fmt: skip
    page = operator_client.get(f"/operations/{operation.pk}/").content.decode()
    assert f"/operations/{operation.pk}/bundle/" in page
    assert "└── pages-1.img (76 KiB)" in page and "CRIU dump: frozen 184.1 ms" in page
    response = operator_client.post(f"/operations/{operation.pk}/bundle/")
    assert Bundle.objects.filter(operation=operation, status="collecting").count() == 1
    assert response.status_code == 302


@pytest.mark.django_db
def test_bundles_older_than_the_retention_go_with_their_files():
    old, recent = ready_bundle(), ready_bundle()
    Bundle.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=91))
    path = old.file.path
    assert delete_old_bundles() == 1
    assert list(Bundle.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Path(path).exists()
