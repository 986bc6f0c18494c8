"""The host agent reads within its caps while it reads (workers/agent.py): real commands and
real files on this machine, which is what the agent reads on an LXD host."""

from __future__ import annotations

import json
import os

import pytest

from workers import agent


def test_a_command_that_floods_is_capped_while_read_and_killed_at_its_timeout(monkeypatch):
    monkeypatch.setattr(agent, "COMMAND_TIMEOUT", 2)
    status, output, _ = agent.run(["yes", "flood"], max_bytes=4096)
    assert status == 124 and "no answer within 2 s" in output
    status, output, cut = agent.run(["seq", "1", "200000"], max_bytes=4096)
    assert status == 0 and cut and len(output.encode()) <= 4096
    assert output.rstrip().endswith("200000")  # the end is kept: errors come last


def test_a_proc_file_keeps_its_end_within_the_cap():
    text, cut, reason = agent.read_tail(agent.Path("/proc/self/mountinfo"), 64)
    assert reason == "" and cut and len(text.encode()) <= 64


@pytest.fixture
def log_folder(tmp_path, settings):
    settings.AGENT_LOG_DIR = str(tmp_path)
    folder = tmp_path / "c1"
    folder.mkdir()
    for number in range(5):
        path = folder / f"log{number}.log"
        path.write_text(f"file {number}\n".ljust(10_000, "x"))
        os.utime(path, (1_000_000 + number, 1_000_000 + number))  # log4 is the newest
    return folder


def test_a_log_folder_is_read_newest_first_within_the_total_and_says_what_it_left(log_folder):
    budget = agent.Budget(25_000)
    items = agent.instance_log_dir("c1", 10_000, budget)
    by_name = {entry["name"].rsplit("/", 1)[-1]: entry for entry in items}
    assert [entry["name"].rsplit("/", 1)[-1] for entry in items][:3] == [
        "log4.log", "log3.log", "log2.log"
    ]  # fmt: skip
    assert len(by_name["log4.log"]["content"]) == 10_000 and not by_name["log4.log"]["truncated"]
    assert by_name["log2.log"]["truncated"] and len(by_name["log2.log"]["content"]) < 10_000
    assert "total cap" in by_name["log2.log"]["truncation"]
    for name in ("log1.log", "log0.log"):
        assert by_name[name]["content"] is None
        assert "the agent's total cap (25000 bytes) was reached" in by_name[name]["reason"]
    assert budget.left <= 0


def test_a_folder_with_too_many_files_reads_the_newest_and_counts_the_rest(log_folder, monkeypatch):
    monkeypatch.setattr(agent, "MAX_LISTED_FILES", 3)
    items = agent.instance_log_dir("c1", 10_000, agent.Budget(10**6))
    assert len(items) == 4 and items[-1]["reason"].startswith("2 older files not read")


def test_a_whole_collection_answers_within_the_total_it_was_given(log_folder, settings):
    settings.AGENT_LXD_DIR = str(log_folder.parent / "no-lxd-here")
    reply = agent.collect(["c1"], 10_000, total_bytes=30_000)
    contents = sum(len((entry["content"] or "").encode()) for entry in reply["items"])
    assert contents <= 30_000 + 10_000  # uname and criu check are not counted: a few lines
    assert len(json.dumps(reply)) < 60_000
    assert any("total cap" in entry["reason"] for entry in reply["items"])
