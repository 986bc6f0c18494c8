"""Capability rules: pure logic over the facts LXD (and the agent) reported."""

from __future__ import annotations

from panel.hosts.capabilities import NO, UNKNOWN, YES, host_capabilities

LXD_5 = {"server": "lxd", "server_version": "5.0.2", "driver": "lxc", "system_type": "physical"}


def states(facts: dict, https: bool = True) -> dict[str, tuple[str, str]]:
    return {c.key: (c.state, c.reason) for c in host_capabilities(facts, https=https)}


def test_lxd_5_without_an_agent_is_unknown_and_says_no_agent():
    for state, reason in states(LXD_5).values():
        assert state == UNKNOWN
        assert "no agent" in reason


def test_lxd_6_6_and_later_cannot_checkpoint_containers():
    for state, reason in states({**LXD_5, "server_version": "6.6"}).values():
        assert state == NO
        assert "removed CRIU support" in reason
    assert states({**LXD_5, "server_version": "5.21.3"})["stateful_snapshot"][0] == UNKNOWN


def test_a_passing_criu_check_from_the_agent_makes_it_yes():
    facts = {**LXD_5, "criu_check": {"ok": True, "output": "Looks good."}}
    assert all(state == YES for state, _ in states(facts).values())


def test_a_failing_criu_check_makes_it_no_with_criu_words():
    facts = {**LXD_5, "criu_check": {"ok": False, "output": "Error (criu/cr-check.c): no vdso"}}
    state, reason = states(facts)["stateful_stop"]
    assert state == NO
    assert "no vdso" in reason


def test_nesting_is_reported_with_the_announcement_warning():
    _, reason = states({**LXD_5, "system_type": "container"})["stateful_snapshot"]
    assert "inside a container" in reason


def test_a_unix_socket_host_cannot_be_a_live_migration_peer():
    result = states(LXD_5, https=False)
    assert result["live_migration"][0] == NO
    assert "HTTPS" in result["live_migration"][1]
    assert result["stateful_snapshot"][0] == UNKNOWN


def test_incus_and_uncontacted_hosts_are_unknown_with_a_reason():
    assert states({"server": "incus", "server_version": "6.0"})["stateful_snapshot"][0] == UNKNOWN
    assert "not been contacted" in states({})["stateful_snapshot"][1]
