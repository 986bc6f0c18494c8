"""The browser's rules: a strict Content-Security-Policy on every response, and templates
that need no exception to it (no inline script, event handler or style attribute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=|javascript:|hx-on", re.IGNORECASE
)


def test_no_template_has_an_inline_script_handler_or_style_attribute():
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in (ROOT / "templates").rglob("*.html")
        for match in INLINE.finditer(path.read_text())
    ]
    assert found == []


def test_every_page_carries_the_strict_policy(client, viewer_client):
    for response in (client.get("/accounts/login/"), viewer_client.get("/")):
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy


def test_htmx_is_told_not_to_inject_styles_or_evaluate_code(viewer_client):
    page = viewer_client.get("/").content.decode()
    assert '"includeIndicatorStyles": false' in page and '"allowEval": false' in page


def hsts_seconds(tmp_path, **environ: str) -> int:
    """SECURE_HSTS_SECONDS as a fresh process with this environment computes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANEL_HSTS")}
    env |= {"PANEL_DATA_DIR": str(tmp_path), "PANEL_SECURE": "false", **environ}
    code = "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(result.stdout.strip().splitlines()[-1])


def test_hsts_is_on_by_default_behind_tls_and_off_without_it(tmp_path):
    assert hsts_seconds(tmp_path, PANEL_SECURE="true") == 31_536_000
    assert hsts_seconds(tmp_path) == 0
    assert hsts_seconds(tmp_path, PANEL_SECURE="true", PANEL_HSTS_SECONDS="60") == 60
