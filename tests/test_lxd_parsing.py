"""The LXD module's pure parsing: what LXD's JSON becomes in the panel (no LXD needed)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
from pathlib import Path

import pytest
import requests
from pylxd.exceptions import LXDAPIException

from panel import lxd
from panel.lxd.trust import _check_token


def token(**fields) -> str:
    return base64.b64encode(json.dumps(fields).encode()).decode()


def test_a_trust_token_is_told_apart_from_a_password():
    assert lxd.decode_trust_token(token(secret="abc", fingerprint="ff"))["secret"] == "abc"
    assert lxd.decode_trust_token("correct horse battery staple") is None
    assert lxd.decode_trust_token(base64.b64encode(b"[1, 2]").decode()) is None


def test_an_expired_token_is_refused_before_anything_is_sent():
    expired = token(secret="s", expires_at="2001-01-01T00:00:00Z")
    with pytest.raises(lxd.LXDError, match="expired"):
        _check_token(lxd.decode_trust_token(expired), lxd.Target("https://h:8443"))


def test_lxd_zero_time_means_never():
    assert lxd.parse_time("0001-01-01T00:00:00Z") is None
    assert lxd.parse_time("2026-11-25T22:00:00.5Z") == dt.datetime(
        2026, 11, 25, 22, 0, 0, 500000, tzinfo=dt.UTC
    )


def test_an_instance_keeps_what_lxc_info_shows():
    raw = {
        "name": "c1",
        "status": "Running",
        "type": "container",
        "architecture": "x86_64",
        "stateful": False,
        "created_at": "2026-11-25T22:00:00Z",
        "last_used_at": "0001-01-01T00:00:00Z",
        "expanded_config": {"image.os": "busybox"},
        "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
        "state": {"pid": 42, "processes": 3, "cpu": {"usage": 2_000_000_000},
                  "memory": {"usage": 1024, "usage_peak": 2048}, "network": None},
        "snapshots": [{"name": "c1/snap0", "created_at": "2026-11-25T22:01:00Z",
                       "expires_at": "0001-01-01T00:00:00Z", "stateful": True}],
    }  # fmt: skip
    instance = lxd.normalise_instance(raw)
    assert instance["state"]["pid"] == 42
    assert instance["state"]["memory_peak"] == 2048
    assert instance["last_used_at"] is None
    assert instance["snapshots"] == [
        {
            "name": "snap0",
            "created_at": dt.datetime(2026, 11, 25, 22, 1, tzinfo=dt.UTC),
            "expires_at": None,
            "stateful": True,
        }
    ]


def test_lxd_5_resources_give_the_cpu_model_but_no_flags():
    cpu_socket = {"name": "AMD EPYC", "vendor": "AuthenticAMD", "cores": [{"core": 0}]}
    resources = {
        "cpu": {"architecture": "x86_64", "total": 2, "sockets": [cpu_socket]},
        "memory": {"total": 1 << 30},
        "system": {"type": "physical"},
    }
    facts = lxd.resource_facts(resources)
    assert facts["cpu_model"] == "AMD EPYC"
    assert facts["cpu_flags"] is None
    resources["cpu"]["sockets"][0]["cores"] = [{"flags": ["sse2", "avx"]}, {"flags": ["aes"]}]
    assert lxd.resource_facts(resources)["cpu_flags"] == ["aes", "avx", "sse2"]


def test_the_client_certificate_is_made_once_with_a_private_key(tmp_path):
    cert, key = lxd.ensure_client_certificate(tmp_path / "client")
    assert lxd.ensure_client_certificate(tmp_path / "client") == (cert, key)
    assert oct((tmp_path / "client" / "client.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "client").stat().st_mode & 0o777) == "0o700"
    assert len(lxd.certificate_fingerprint(Path(cert).read_text())) == 64


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ConnectionError("Connection refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        ssl.SSLError("bad record"),
    ],
)
def test_errors_where_lxd_did_not_answer_are_told_apart(error):
    made = lxd.lxd_error(error, "https://10.0.0.1:8443")
    assert isinstance(made, lxd.LXDUnreachable)
    assert "https://10.0.0.1:8443" in str(made)


def test_a_refusal_by_lxd_is_not_lost_contact():
    response = requests.Response()
    response.status_code, response._content = 400, b'{"error": "Instance is busy"}'
    made = lxd.lxd_error(LXDAPIException(response), "https://10.0.0.1:8443")
    assert isinstance(made, lxd.LXDError) and not isinstance(made, lxd.LXDUnreachable)
    assert str(made).startswith("The server at https://10.0.0.1:8443 refused the request")


def test_an_instance_in_incus_error_state_with_null_fields_is_still_kept():
    raw = {"name": "c1", "status": "Error", "profiles": None, "expanded_config": None,
           "expanded_devices": None, "state": None}  # fmt: skip
    kept = lxd.normalise_instance(raw)
    assert (kept["profiles"], kept["expanded_config"], kept["expanded_devices"]) == ([], {}, {})
    assert kept["status"] == "Error"
