"""What an LXD event is about (parsing only; tests/test_events_lab.py follows real ones)."""

from __future__ import annotations

import time

import pytest

from panel import lxd
from panel.hosts.events import apply_event
from tests.conftest import wait_for
from tests.helpers import make_host, make_instance


def lifecycle(action: str, source: str, **context) -> dict:
    return {"type": "lifecycle", "metadata": {"action": action, "source": source,
                                              "context": context}}  # fmt: skip


@pytest.mark.parametrize(
    ("event", "about"),
    [
        (lifecycle("instance-started", "/1.0/instances/c1"), ("c1", "instance-started")),
        (lifecycle("instance-snapshot-created", "/1.0/instances/c1/snapshots/s1"),
         ("c1", "instance-snapshot-created")),
        (lifecycle("instance-deleted", "/1.0/instances/c1?project=default"),
         ("c1", "instance-deleted")),
        (lifecycle("image-created", "/1.0/images/abc"), None),
        ({"type": "operation", "metadata": {"status": "Running",
                                            "resources": {"instances": ["/1.0/instances/c1"]}}},
         None),
        ({"type": "operation", "metadata": {"status": "Success",
                                            "resources": {"instances": ["/1.0/instances/c1"]}}},
         ("c1", "operation-ended")),
        ({"type": "logging", "metadata": {"message": "x"}}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_an_event_names_the_instance_it_is_about(event, about):
    assert lxd.instance_of(event) == about


@pytest.mark.django_db
def test_a_deletion_outside_the_panel_marks_the_row_gone_and_keeps_it():
    host = make_host()
    instance = make_instance(host, "c1")
    assert apply_event(host, lifecycle("instance-deleted", "/1.0/instances/c1")) == "c1"
    instance.refresh_from_db()
    assert instance.gone_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_host_whose_events_fail_is_tried_again_after_a_growing_wait(monkeypatch):
    """The reconnect loop alone: each subscription here fails at once (the host has no
    pinned certificate, so the panel refuses to connect), and the waits grow 1 s, 2 s."""
    from panel.hosts import events

    host = make_host("h1", endpoint="https://127.0.0.1:1")
    tries: list[float] = []
    real = events.HostWatch.listen_once

    def counted(self) -> bool:
        tries.append(time.monotonic())
        return real(self)

    monkeypatch.setattr(events.HostWatch, "listen_once", counted)
    watch = events.HostWatch(host.pk)
    watch.start()
    wait_for(lambda: len(tries) >= 3, timeout=10, what="three tries")
    watch.stop()
    watch.join(timeout=5)
    assert not watch.is_alive()
    first, second = tries[1] - tries[0], tries[2] - tries[1]
    assert 0.9 < first < 1.9 and 1.9 < second < 3.5, (first, second)
