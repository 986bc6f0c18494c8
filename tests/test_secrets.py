"""Secrets at every boundary of the panel, without LXD: the container page and its fragments,
the JSON API, operations' errors and timelines, the audit trail, the admin, host errors; and
the administrators' audited reveal. tests/test_secrets_lab.py plants the same kinds of secret
on a real lab container and host and greps everything, bundle tarball included."""

from __future__ import annotations

import pytest

from panel.accounts.tokens import issue_token
from panel.models import AuditEvent, Instance, Operation
from panel.operations import lifecycle
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db

SECRETS = {
    "user.db_password": "db-pw-Qx71",
    "environment.API_URL_TOKEN": "env-token-Lk22",
    "environment.PLAIN": "plain-env-Rt83",
    "user.user-data": "#cloud-config\npassword: cloud-pw-Mn44\n",
    "core.proxy_https": "http://proxy:proxy-pw-Vb55@proxy.example:3128",
    "raw.lxc": "lxc.environment = DB_CRED=raw-cred-Zp66\nlxc.apparmor.profile = unconfined\n",
}
PLANTED = ["db-pw-Qx71", "env-token-Lk22", "plain-env-Rt83", "cloud-pw-Mn44", "proxy-pw-Vb55",
           "raw-cred-Zp66"]  # fmt: skip


@pytest.fixture
def secretive() -> Instance:
    return make_instance(
        make_host(),
        expanded_config={**SECRETS, "limits.cpu": "2"},
        expanded_devices={"data": {"type": "disk", "path": "/data",
                                   "source": "https://u:dev-pw-Hj77@s3.example/bucket"}},
    )  # fmt: skip


def assert_no_secret(text: str) -> None:
    for secret in [*PLANTED, "dev-pw-Hj77"]:
        assert secret not in text, secret


@pytest.mark.parametrize("persona", ["viewer_client", "operator_client", "admin_client"])
def test_the_container_page_its_tabs_and_fragments_show_no_secret_to_anyone(
    request, persona, secretive
):
    client = request.getfixturevalue(persona)
    url = f"/containers/{secretive.pk}/"
    for tab in ("overview", "snapshots", "operations", "logs", "config"):
        page = client.get(url, {"tab": tab})
        fragment = client.get(url, {"tab": tab}, headers={"HX-Request": "true"})
        assert page.status_code == fragment.status_code == 200, tab
        assert_no_secret(page.content.decode())
        assert_no_secret(fragment.content.decode())
    config = client.get(url, {"tab": "config"}).content.decode()
    assert "limits.cpu: &#x27;2&#x27;" in config and "[REDACTED]" in config
    assert "6 values redacted" in config


def test_only_an_administrator_is_offered_reveal_buttons(viewer_client, admin_client, secretive):
    url = f"/containers/{secretive.pk}/?tab=config"
    assert b"Reveal</button>" not in viewer_client.get(url).content
    page = admin_client.get(url).content.decode()
    assert page.count("Reveal</button>") == 6 and 'value="user.db_password"' in page


def test_an_administrator_reveals_one_value_and_the_audit_trail_names_the_key_only(
    admin_client, secretive
):
    url = f"/containers/{secretive.pk}/config/reveal/"
    response = admin_client.post(url, {"name": "user.db_password"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.content.decode() == '<pre class="config">db-pw-Qx71</pre>'
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.get(action="instance-config-reveal")
    assert event.outcome == "ok" and event.username == "ada"
    assert "name=user.db_password" in event.detail and "db-pw-Qx71" not in event.detail
    page = admin_client.post(url, {"name": "core.proxy_https"}).content.decode()
    assert "proxy-pw-Vb55" in page and "audit trail records" in page  # without htmx: a page
    assert admin_client.post(url, {"name": "no.such"}).status_code == 404
    assert admin_client.get(url, {"name": "user.db_password"}).status_code == 405


@pytest.mark.parametrize("persona", ["viewer_client", "operator_client"])
def test_nobody_else_can_reveal_and_each_try_is_on_the_audit_trail(request, persona, secretive):
    client = request.getfixturevalue(persona)
    url = f"/containers/{secretive.pk}/config/reveal/"
    response = client.post(url, {"name": "user.db_password"})
    assert response.status_code == 403 and b"db-pw-Qx71" not in response.content
    assert AuditEvent.objects.get(action="instance-config-reveal").outcome == "forbidden"


@pytest.mark.parametrize("role", ["viewer_user", "operator_user", "admin_user"])
def test_the_api_shows_the_config_redacted_to_every_token(request, client, role, secretive):
    token = issue_token(request.getfixturevalue(role), "script")[1]
    headers = {"Authorization": f"Bearer {token}"}
    detail = client.get(f"/api/containers/{secretive.pk}/", headers=headers)
    assert_no_secret(detail.content.decode())
    body = detail.json()
    assert (
        body["config"]["limits.cpu"] == "2" and body["config"]["user.db_password"] == "[REDACTED]"
    )
    assert body["config"]["core.proxy_https"] == "http://[REDACTED]@proxy.example:3128"
    assert body["redacted_keys"] == sorted(SECRETS)
    assert_no_secret(client.get("/api/containers/", headers=headers).content.decode())


def test_an_operation_s_error_outcome_and_timeline_never_hold_the_container_s_secrets(
    viewer_client, secretive
):
    operation = lifecycle.request(secretive, "stateful_snapshot", None, {"snapshot": "s1"})
    claim = lifecycle.claim(operation.pk)
    operation = Operation.objects.select_related("instance").get(pk=operation.pk)
    operation.claim_token = claim.token
    operation.log("LXD said: Invalid value db-pw-Qx71 for MYSQL_PWD=mysql-pw-Ty88")
    lifecycle.record_progress(operation, "copying with token=progress-tok-Ui99")
    lifecycle.finish(operation, Operation.Status.FAILED, "Checkpoint failed.",
                     "exec: environment PLAIN=plain-env-Rt83 refused")  # fmt: skip
    stored = Operation.objects.get(pk=operation.pk)
    texts = [stored.error, stored.outcome, stored.progress_text,
             *stored.events.values_list("message", flat=True)]  # fmt: skip
    for text in texts:
        assert_no_secret(text)
        assert "mysql-pw-Ty88" not in text and "progress-tok-Ui99" not in text
    page = viewer_client.get(f"/operations/{operation.pk}/").content.decode()
    assert_no_secret(page)
    assert "Checkpoint failed." in page


def test_the_audit_trail_and_its_export_hold_no_credentials_an_administrator_typed(admin_client):
    admin_client.post(
        "/hosts/add/", {"name": "h1", "endpoint": "https://bob:typed-pw-Op10@10.0.0.1"}
    )
    event = AuditEvent.objects.get(action="host-add")
    assert "typed-pw-Op10" not in event.detail and "https://[REDACTED]@10.0.0.1" in event.detail
    export = b"".join(admin_client.get("/audit/export.csv").streaming_content)
    assert b"typed-pw-Op10" not in export


def test_the_admin_does_not_show_a_container_s_config(admin_client, secretive):
    page = admin_client.get(f"/admin/panel/instance/{secretive.pk}/change/").content.decode()
    assert "Expanded config" not in page
    assert_no_secret(page)


def test_a_failed_enrolment_never_quotes_the_trust_secret(secretive):
    host = secretive.host
    host.record_enrollment_failure("LXD refused trust password enrol-pw-As11.", "enrol-pw-As11")
    host.refresh_from_db()
    assert "enrol-pw-As11" not in host.last_error
