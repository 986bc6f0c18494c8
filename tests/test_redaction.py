"""The redaction policy (panel/redaction.py) on its own: every shape of secret the review's
probes got through, and the values that must stay readable. The lab's planted-secrets corpus
(tests/test_secrets_lab.py) checks the same policy at every boundary of the running panel."""

from __future__ import annotations

import base64
import json
import textwrap
from collections import Counter

import pytest

from panel.redaction import Redactor, is_secret_key, policy, without_credentials

TOKEN = base64.b64encode(
    json.dumps(
        {"client_name": "ci", "fingerprint": "ab" * 32, "addresses": ["10.0.0.1:8443"],
         "secret": "trust-token-secret-41", "expires_at": "0001-01-01T00:00:00Z"}
    ).encode()
).decode()  # fmt: skip


@pytest.mark.parametrize(
    "key",
    [
        "user.db_password", "user.DB_PASSWORD", "user.dbPassword", "user.mysql-pass",
        "user.api_key", "user.apiKey", "user.sshkey", "user.private-thing", "user.secret",
        "user.oauth", "user.auth.username", "user.credentials", "user.cred", "user.aws_token",
        "core.trust_password", "loki.auth.password", "environment.HOME", "environment.lower",
        "cloud-init.user-data", "cloud-init.network-config", "user.user-data",
        "user.vendor-data", "user.meta-data", "user.network-config", "user.wifi_psk",
        "MYSQL_PWD", "user.session_cookie",
    ],
)  # fmt: skip
def test_config_keys_that_name_a_secret_are_secret_in_any_namespace_and_case(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "limits.cpu", "limits.memory", "security.nesting", "security.privileged",
        "volatile.eth0.hwaddr", "volatile.uuid", "image.description", "raw.idmap",
        "boot.autostart.priority", "snapshots.pattern", "migration.stateful",
        "linux.kernel_modules", "user.keyboard", "raw.lxc",
    ],
)  # fmt: skip
def test_ordinary_config_keys_stay_readable(key):
    assert not is_secret_key(key)


def test_a_config_is_masked_key_by_key_and_inside_values():
    counts: Counter = Counter()
    clean = Redactor().config(
        {
            "user.db_password": "db-pass-7781",
            "environment.PLAIN": "plain-env-2231",
            "raw.lxc": "lxc.environment = DB_CRED=cred-value-5512\nlxc.apparmor.profile=unconfined",
            "core.proxy_https": "http://proxyuser:proxy-pw-0042@proxy.example:3128",
            "user.notes": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "limits.cpu": "2",
            "security.nesting": "true",
            "user.auth.enabled": "false",
        },
        counts,
    )
    assert clean == {
        "user.db_password": "[REDACTED]",
        "environment.PLAIN": "[REDACTED]",
        "raw.lxc": "lxc.environment = DB_CRED=[REDACTED]\nlxc.apparmor.profile=unconfined",
        "core.proxy_https": "http://[REDACTED]@proxy.example:3128",
        "user.notes": "[REDACTED private key]",
        "limits.cpu": "2",
        "security.nesting": "true",
        "user.auth.enabled": "false",
    }
    assert counts["environment value"] == 2 and counts["credentials in a URL"] == 1


def test_devices_are_masked_like_config():
    devices = {
        "data": {"type": "disk", "source": "https://u:dev-pw-7788@s3.example/b", "path": "/d"},
        "eth0": {"type": "nic", "nictype": "bridged"},
    }
    clean = Redactor().devices(devices)
    assert clean["data"]["source"] == "https://[REDACTED]@s3.example/b"
    assert clean["eth0"] == devices["eth0"]


SECRET_LINES = [
    ("MYSQL_PWD=mysql-pw-1234 mysql -h db", "mysql-pw-1234"),
    ("export API_TOKEN=api-tok-9876 DB_PASSWORD='quoted pw 55'", "api-tok-9876"),
    ("export API_TOKEN=api-tok-9876 DB_PASSWORD='quoted pw 55'", "quoted pw 55"),
    ('{"password": "json-pw-1111", "user": "bob"}', "json-pw-1111"),
    ("  user.db_password: yaml-pw-2222", "yaml-pw-2222"),
    ("lxc.environment = ANYTHING=env-value-3333", "env-value-3333"),
    ('raw.lxc: "lxc.environment = DB_CRED=inline-4444\\nlxc.x = y"', "inline-4444"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("proxy-authorization: Digest username=x, response=abcd1234", "response=abcd1234"),
    ("curl -H 'Authorization: Bearer bearer-5555-token'", "bearer-5555-token"),
    ("connecting to postgres://panel:url-pw-6666@db:5432/panel", "url-pw-6666"),
    ("redis://:redis-pw-7777@127.0.0.1:6379/0 refused", "redis-pw-7777"),
    ("--password=cli-pw-8888 --user bob", "cli-pw-8888"),
    ("token lxdp_Abcdefghijklmnopqrstuvwxyz0123456789", "lxdp_Abcdefghijklmnopqrstuvwxyz0123"),
    (f"joined with {TOKEN}", "trust-token-secret-41"),
    (f"joined with {TOKEN}", TOKEN[:40]),
]


@pytest.mark.parametrize(("line", "secret"), SECRET_LINES)
def test_secrets_anywhere_in_a_line_are_removed(line, secret):
    assert secret not in Redactor().text(line)


def test_a_trust_token_wrapped_across_lines_is_removed_and_the_next_line_kept():
    wrapped = "\n    ".join(textwrap.wrap(TOKEN, 64))
    text = Redactor().text(f"token:\n    {wrapped}\nError: the next line stays\n")
    assert "[REDACTED trust token]" in text and "Error: the next line stays" in text
    for piece in textwrap.wrap(TOKEN, 64):
        assert piece not in text


def test_a_known_secret_is_removed_wherever_it_is_repeated_even_split():
    redactor = Redactor(known=["trust-pw-s3cr3t-9999"])
    redactor.config({"user.db_password": "db-pass-0000-x"})
    text = redactor.text(
        "said trust-pw-s3cr3t-9999 once, then trust-pw-s3cr\n  3t-9999 wrapped, and "
        'db-pass-0000-x in an error, and "db-pass-\\n0000-x" escaped'
    )
    assert "9999" not in text and "0000-x" not in text
    assert text.count("[REDACTED]") == 4


def test_pem_private_keys_are_removed_also_when_a_cap_cut_them():
    for text in ("QUJDREVGR0g=\n-----END PRIVATE KEY-----\nafter",
                 "before\n-----BEGIN EC PRIVATE KEY-----\nQUJDREVGR0g=",
                 "-----BEGIN PGP PRIVATE KEY BLOCK-----\nQUJDREVGR0g=\n"
                 "-----END PGP PRIVATE KEY BLOCK-----"):  # fmt: skip
        assert "QUJDREVGR0g" not in Redactor().text(text)


def test_yaml_blocks_under_a_secret_key_are_removed_whole():
    text = Redactor().text(
        "config:\n  user.user-data: |\n    #cloud-config\n    chpasswd: {list: 'a:b'}\n"
        "  limits.cpu: '2'\n"
    )
    assert "chpasswd" not in text and "limits.cpu: '2'" in text


def test_what_operators_need_to_read_stays_readable():
    text = (
        "(00.012) Error (criu/cr-dump.c:2093): Dumping FAILED.\n"
        "lxc 20260101 ERROR criu - criu.c:do_dump:1108 - dump failed with 1\n"
        "lxc.apparmor.profile = unconfined\nkeyboard=us\nauth: true\n"
        "https://10.77.0.11:8443/1.0/instances/c1\n"
    )
    assert Redactor().text(text) == text


def test_urls_lose_their_credentials_and_query_and_keep_the_rest():
    assert without_credentials("redis://:pw@10.0.0.5:6380/0") == "redis://10.0.0.5:6380/0"
    assert without_credentials("redis://10.0.0.5/0?password=pw") == "redis://10.0.0.5/0"
    assert without_credentials("rediss://user:pw@[::1]/2") == "rediss://[::1]/2"
    assert without_credentials("redis://10.0.0.5") == "redis://10.0.0.5"


def test_the_panel_policy_knows_the_redis_password_and_the_admin_patterns(settings):
    settings.CELERY_BROKER_URL = "redis://:broker-pw-4321@127.0.0.1:6379/0"
    settings.REDACT_PATTERNS = [r"corp-\d{6}"]
    text = policy().text("Redis said broker-pw-4321 refused; customer corp-123456")
    assert "broker-pw-4321" not in text and "corp-123456" not in text
