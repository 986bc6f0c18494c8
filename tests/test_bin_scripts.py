"""The README's two commands are shell scripts; the Python they run inline must keep working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INLINE = re.compile(r"manage\.py shell -v0 -c '([^']+)'")


def test_every_inline_manage_py_snippet_of_the_bin_scripts_runs(tmp_path):
    snippets = [
        code
        for script in ("panel", "test", "lib.sh")
        for code in INLINE.findall((ROOT / "bin" / script).read_text())
    ]
    assert snippets, "bin/panel runs Python inline to find a local LXD: the test must see it"
    env = {**os.environ, "PANEL_DATA_DIR": str(tmp_path),
           "PANEL_DATABASE_URL": f"sqlite:///{tmp_path / 'panel.sqlite3'}"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    for code in snippets:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v0", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{code}\n{result.stderr}"


def test_both_scripts_are_valid_bash():
    for script in ("panel", "test", "lib.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "bin" / script)], check=True)
