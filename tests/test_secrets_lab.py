"""The planted-secrets corpus: secrets of many shapes planted on a real lab container and
host (config keys, environment, user data, raw.lxc, a profile, the server's proxy, files that
land in the logs), a checkpoint that fails for real (host1 on Debian 12's CRIU), and then
every file of the failed operation's bundle and every page, fragment and API answer a viewer
or an operator can reach are searched for each secret. None may appear."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import tarfile
import textwrap
from pathlib import Path
from urllib.parse import unquote

import pytest

from panel.accounts.tokens import issue_token
from panel.failures.filing import filings
from panel.models import Bundle, FailureGroup, Instance, Operation
from tests.conftest import wait_for
from tests.lab_tools import (
    enroll,
    kill_stuck_dumps,
    lxc,
    read_counter,
    set_criu,
    unique_name,
)
from tests.test_operations_lab import operate

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def secret(number: int) -> str:
    """Distinct, and never a substring of another (they all end in their own number)."""
    return f"Pl4nt3d-{number:02d}-zQ"


TRUST_TOKEN = base64.b64encode(
    json.dumps({"client_name": "corpus", "fingerprint": "ab" * 32,
                "addresses": ["10.77.0.11:8443"], "secret": secret(26),
                "expires_at": "0001-01-01T00:00:00Z"}).encode()
).decode()  # fmt: skip
WRAPPED_TOKEN = textwrap.wrap(TRUST_TOKEN, 60)

CONFIG = {
    "user.db_password": secret(1),
    "user.API_KEY": secret(2),
    "user.apiToken": secret(3),
    "user.secret-sauce": secret(4),
    "user.mysql.pass": secret(5),
    "user.auth": secret(6),
    "user.private_thing": secret(7),
    "user.ssh-privkey": secret(8),
    "user.credentials": secret(9),
    "user.session_cookie": secret(10),
    "environment.DB_URL": f"postgres://app:{secret(11)}@db.internal:5432/app",
    "environment.PLAIN_VAR": secret(12),
    "environment.MYSQL_PWD": secret(13),
    "user.user-data": (
        f"#cloud-config\npassword: {secret(14)}\nchpasswd: {{list: 'root:{secret(15)}'}}\n"
    ),
    "user.vendor-data": f"#cloud-config\nruncmd: [echo {secret(16)}]\n",
    "user.meta-data": f"instance-id: corpus\nlocal-hostname: {secret(17)}\n",
    "user.network-config": f"version: 2\n# {secret(18)}\n",
    "raw.lxc": f"lxc.environment = DB_CRED={secret(19)}\n",
    "user.wiki": f"see https://admin:{secret(20)}@wiki.example/page",
    "user.notes": f"-----BEGIN RSA PRIVATE KEY-----\n{secret(21)}\n-----END RSA PRIVATE KEY-----",
    "user.headers": f"Authorization: Basic {secret(22)}",
    "user.cmdline": f"run --password={secret(23)} --user x",
    "user.curl": f"curl -H 'Authorization: Bearer {secret(24)}' https://api.example",
    "user.payload": json.dumps({"token": secret(25)}),
    "user.motd": "joined with\n    " + "\n    ".join(WRAPPED_TOKEN) + "\nwelcome",
}  # fmt: skip
PROFILE_SECRET = secret(27)  # environment.PROFILE_SECRET, from a profile
PROXY_SECRET = secret(28)  # core.proxy_https on the host
LOG_SECRETS = [secret(29), secret(30), secret(31), secret(32)]  # a file in the host's log dir
LXD_LOG_SECRET = secret(33)  # a line in the host's lxd.log
PLANTED = [*(secret(n) for n in range(1, 34) if n != 26), *WRAPPED_TOKEN]


@contextlib.contextmanager
def secretive_container(lab: dict, lab_host: dict):
    """A running counter with the corpus in its config and profile, the host's proxy set, and
    files that land in its logs; all of it removed again, and the host's CRIU fixed."""
    name, profile = unique_name("corpus"), unique_name("corpus-profile")
    log_dir = Path(lab_host["lxd_dir"]).parent / "log"
    try:
        lxc(lab_host, "profile", "create", profile)
        lxc(lab_host, "profile", "set", profile, f"environment.PROFILE_SECRET={PROFILE_SECRET}")
        lxc(
            lab_host, "init", lab["image_alias"], name, "--profile", "default", "--profile", profile
        )
        for key, value in CONFIG.items():
            lxc(lab_host, "config", "set", name, f"{key}={value}")  # a value may start with -
        lxc(lab_host, "config", "set", "core.proxy_https",
            f"http://proxyuser:{PROXY_SECRET}@proxy.invalid:3128")  # fmt: skip
        lxc(lab_host, "start", name)
        wait_for(lambda: read_counter(lab_host, name) >= 2, timeout=60, what="the counter")
        (log_dir / name / "planted.log").write_text(
            f"MYSQL_PWD={LOG_SECRETS[0]} mysql -h db\nAuthorization: Bearer {LOG_SECRETS[1]}\n"
            f"-----BEGIN PRIVATE KEY-----\n{LOG_SECRETS[2]}\n-----END PRIVATE KEY-----\n"
            f"db_password: {LOG_SECRETS[3]}\n"
        )
        with (log_dir / "lxd.log").open("a") as lxd_log:
            lxd_log.write(f't=2026-01-01T00:00:00 lvl=dbug msg="planted by a panel test'
                          f' API_TOKEN={LXD_LOG_SECRET}"\n')  # fmt: skip
        yield name
    finally:
        kill_stuck_dumps(name)
        set_criu(lab_host, "fixed")
        lxc(lab_host, "config", "unset", "core.proxy_https", check=False)
        lxc(lab_host, "delete", "--force", name, check=False)
        lxc(lab_host, "profile", "delete", profile, check=False)


def raw_material(lab_host: dict, name: str) -> str:
    """What LXD and the host hold, unredacted: the corpus must really be there to be found."""
    logs = json.loads(lxc(lab_host, "query", f"/1.0/instances/{name}/logs"))
    texts = [lxc(lab_host, "config", "show", "--expanded", name), lxc(lab_host, "config", "show")]
    texts += [lxc(lab_host, "query", log) for log in logs if log.endswith("lxc.conf")]
    log_dir = Path(lab_host["lxd_dir"]).parent / "log"
    texts += [(log_dir / name / "planted.log").read_text(), (log_dir / "lxd.log").read_text()]
    return "\n".join(texts)


def tarball_members(client, bundle: Bundle) -> dict[str, bytes]:
    response = client.get(f"/bundles/{bundle.pk}/download/")
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def everything_a_persona_reads(client, token: str, instance: Instance, operation: Operation,
                               bundle: Bundle) -> dict[str, bytes]:  # fmt: skip
    """Every page, fragment and API answer about this container, its host, operation,
    bundle and failure group, as the persona's browser and script would get them."""
    fragment = {"HX-Request": "true"}
    group = FailureGroup.objects.get(failures__operation=operation)
    tabs = [f"/containers/{instance.pk}/?tab={tab}"
            for tab in ("overview", "snapshots", "operations", "logs", "config")]  # fmt: skip
    pages = [
        "/", "/hosts/", f"/hosts/{instance.host_id}/", "/containers/", *tabs,
        "/operations/", f"/operations/{operation.pk}/", "/bundles/", f"/bundles/{bundle.pk}/",
        "/failures/", f"/failures/{group.pk}/", "/taskbar/", "/health/",
        *(f"/containers/{instance.pk}/logs/{log.pk}/" for log in instance.logs.all()),
    ]  # fmt: skip
    fragments = [
        *tabs, f"/hosts/{instance.host_id}/", f"/operations/{operation.pk}/progress/",
        f"/bundles/{bundle.pk}/status/",
    ]  # fmt: skip
    api = [
        "/api/hosts/", f"/api/hosts/{instance.host_id}/", "/api/containers/",
        f"/api/containers/{instance.pk}/", "/api/operations/", f"/api/operations/{operation.pk}/",
        "/api/bundles/", f"/api/bundles/{bundle.pk}/", "/api/failures/",
        f"/api/failures/{group.pk}/",
    ]  # fmt: skip
    bearer = {"Authorization": f"Bearer {token}"}
    answers = {path: client.get(path) for path in pages}
    answers |= {f"{path} (htmx)": client.get(path, headers=fragment) for path in fragments}
    answers |= {f"{path} (api)": client.get(path, headers=bearer) for path in api}
    # Each really shows its content (the health page is 503 while an agent is silent; a
    # finished fragment 286): a refusal would find nothing and prove nothing.
    refused = {where: a.status_code for where, a in answers.items()
               if a.status_code not in (200, 286) and not where.startswith("/health/")}  # fmt: skip
    assert refused == {}
    found = {where: answer.content for where, answer in answers.items()}
    # The filing links leave for public trackers percent-encoded: searched decoded.
    found |= {f"filing {f.tracker.key}": unquote(f.url).encode() for f in filings(group)}
    return found


def assert_nothing_planted_in(found: dict[str, bytes]) -> None:
    leaks = [(where, planted) for where, data in found.items() for planted in PLANTED
             if planted.encode() in data]  # fmt: skip
    assert leaks == []


def test_no_planted_secret_reaches_a_bundle_or_any_page_or_api_answer(
    lab, lab_agents, celery_worker, operator_client, viewer_client, operator_user, viewer_user
):
    host1 = lab["hosts"][0]
    with secretive_container(lab, host1) as name:
        raw = raw_material(host1, name)
        assert [p for p in PLANTED if p not in raw] == []  # the corpus is really on the lab
        assert len(PLANTED) >= 30
        host = enroll(host1)
        enroll(lab["hosts"][1])
        instance = Instance.objects.get(host=host, name=name)
        set_criu(host1, "stock")  # Debian 12's CRIU fails at dump on this kernel
        operation = operate(operator_client, instance, "stateful_snapshot", snapshot="corpus")
        assert operation.status == Operation.Status.FAILED
        bundle = wait_for(
            lambda: Bundle.objects.exclude(status=Bundle.Status.COLLECTING)
            .filter(operation=operation, automatic=True).first(),
            timeout=120, what="the failed operation's bundle",
        )  # fmt: skip
        assert bundle.status == Bundle.Status.READY, bundle.error

        members = tarball_members(operator_client, bundle)
        names = sorted(members)
        assert any("/logs/snapshot_dump_" in n for n in names), names  # CRIU's own log is in
        assert any(n.endswith(f"var-log-lxd/{name}/planted.log") for n in names), names
        assert any(n.endswith("host1/lxd.log") for n in names), names
        print(f"bundle: {len(members)} files, {sum(map(len, members.values()))} bytes")
        assert_nothing_planted_in(members)

        for persona, client, user in (("operator", operator_client, operator_user),
                                      ("viewer", viewer_client, viewer_user)):  # fmt: skip
            token = issue_token(user, f"corpus {persona}")[1]
            found = everything_a_persona_reads(client, token, instance, operation, bundle)
            assert all(b"Traceback" not in data for data in found.values())
            print(f"{persona}: {len(found)} answers, {sum(map(len, found.values()))} bytes")
            assert_nothing_planted_in(found)
        config_page = viewer_client.get(f"/containers/{instance.pk}/?tab=config").content.decode()
        assert "[REDACTED]" in config_page and "values redacted" in config_page
