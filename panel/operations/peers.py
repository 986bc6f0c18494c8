"""When a host stops answering in the middle of an operation.

An LXD daemon that is killed or restarted comes back within seconds (systemd restarts it); a
cut link may come back too. So an operation does not give up on a silent host at once: it
waits up to PANEL_MIGRATION_PEER_WAIT_SECONDS for an answer, asking again every two seconds,
and meanwhile asks the other host what it knows. Only then does it decide from what it has,
and says which host it could not ask and since when. One host going away never makes the
panel "unable to say" about the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from panel import lxd

if TYPE_CHECKING:
    from panel.operations.runner import Tracker

ASK_INTERVAL = 2.0


@dataclass
class Seen:
    """One host's copy of the container, as far as the panel could ask: `summary` is None
    when LXD said there is none; `answered` False when LXD did not answer (`error`)."""

    host: str
    name: str
    answered: bool
    summary: dict | None = None
    error: str = ""

    @property
    def status(self) -> str:
        if not self.answered:
            return "Unknown"
        return self.summary["status"] if self.summary else "Gone"

    def describe(self) -> str:
        if not self.answered:
            return f"{self.host}: unknown (its LXD does not answer)"
        if self.summary is None:
            return f"{self.host}: no copy"
        saved = " with saved state" if self.summary["stateful"] else ""
        return f"{self.host}: {self.summary['status'].upper()}{saved}"


def look(tracker: Tracker, name: str) -> Seen:
    """The container on the tracker's host, or why LXD could not be asked (never raises for
    a silent host). An answer is remembered for the container's row."""
    try:
        return Seen(tracker.host.name, name, True, tracker.summary(name))
    except lxd.LXDUnreachable as error:
        return Seen(tracker.host.name, name, False, error=str(error))


def wait_for_answer(tracker: Tracker, name: str, why: str) -> Seen:
    """Ask the silent host again every two seconds for what is left of its peer wait, the
    operation's heartbeat kept meanwhile; what it said at last, or that it never answered."""
    seconds = tracker.patience.remaining()
    if tracker.patience.since is None:
        tracker.patience.since = time.monotonic()
    deadline = time.monotonic() + seconds
    if seconds >= ASK_INTERVAL:  # else its wait is over already: one more look, then decide
        tracker.operation.log(
            f"{tracker.host.name}'s {tracker.host.platform.name} does not answer ({why}): "
            f"asking again for up to {seconds:.0f} s before deciding without it.",
            "reconciling",
        )
    while True:
        seen = look(tracker, name)
        if seen.answered:
            tracker.operation.log(
                f"{tracker.host.name}'s {tracker.host.platform.name} answers again.", "reconciling"
            )
            tracker.patience.since = None
            return seen
        if time.monotonic() >= deadline:
            tracker.operation.log(
                f"{tracker.host.name}'s LXD still does not answer: {seen.error}", "reconciling"
            )
            return seen
        tracker.keep_alive(f"waiting for {tracker.host.name}'s LXD to answer")
        time.sleep(ASK_INTERVAL)


@dataclass
class Patience:
    """Tolerates a silent host inside a polling loop for up to the peer wait: `silent`
    returns True while the loop may go on polling, and False once the wait is over. One per
    Tracker, so every loop of an operation shares its host's wait."""

    tracker: Tracker
    seconds: float = field(default_factory=lambda: float(settings.MIGRATION_PEER_WAIT_SECONDS))
    error: str = ""
    ever_silent: bool = False  # the host went silent at least once during the operation

    # Shared by every Tracker of the operation on this host: a wait begun while following
    # LXD's operation goes on, not starts again, when the host is asked once more after it.
    @property
    def since(self) -> float | None:
        return self._silences().get(self.tracker.host.pk)

    @since.setter
    def since(self, value: float | None) -> None:
        self._silences()[self.tracker.host.pk] = value

    def _silences(self) -> dict[int, float | None]:
        return self.tracker.operation.__dict__.setdefault("_silent_since", {})

    def remaining(self) -> float:
        if self.since is None:
            return self.seconds
        return max(0.0, self.seconds - (time.monotonic() - self.since))

    def silent(self, error: lxd.LXDUnreachable) -> bool:
        now = time.monotonic()
        self.error, self.ever_silent = str(error), True
        if self.since is None:
            self.since = now
            self.tracker.operation.log(
                f"{self.tracker.host.name}'s LXD does not answer ({error}): waiting up to "
                f"{self.seconds:.0f} s for it.",
                self.tracker.operation.stage,
            )
        if now - self.since >= self.seconds:
            return False
        self.tracker.keep_alive(f"waiting for {self.tracker.host.name}'s LXD to answer")
        time.sleep(ASK_INTERVAL)
        return True

    def answered(self) -> None:
        if self.since is not None:
            self.tracker.operation.log(
                f"{self.tracker.host.name}'s LXD answers again after "
                f"{time.monotonic() - self.since:.0f} s.",
                self.tracker.operation.stage,
            )
            self.since = None
