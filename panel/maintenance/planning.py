"""The plan of a host action, as pure rules over what was gathered (panel/maintenance/
gather.py): for each container what will happen to it, where to, how, how long it is
expected to be down, and, when it cannot be checkpointed or moved, why and what happens to
it instead (stopped cleanly, left running, or skipped by the admin's choice).

Order: the host's containers are stopped or moved last-started first (as a shutdown does)
and brought back in the order they were started, so what started first runs first again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from panel.hosts.risks import NIC, Risk, checkpoint_risks
from panel.operations.preflight import FAIL, LIVE_STRATEGIES, WARN, Check, Side, blocked, run_checks
from panel.operations.strategy import LABELS

STOP, LEAVE, COLD = "stop", "leave", "cold"  # MaintenancePlan.Policy
STATEFUL_STOP, CLEAN_STOP, START, MIGRATE = "stateful_stop", "stop", "start", "migrate"
SKIPPED = "skipped by the admin's choice"
NO_ESTIMATE: tuple[float | None, str] = (None, "")
# LAB.md: an LXD 5.0 -> Incus 6.0 live move lost the running state while both said success.
ACROSS_PLATFORMS = (
    "between LXD and Incus a move with the running state is not proven to keep it: only a cold move"
)


@dataclass
class Item:
    """What the plan does with one container (MaintenancePlan.items holds these as dicts)."""

    name: str
    instance: int | None  # the Instance row where the container is now
    at: str  # the host it is on now
    status: str  # as LXD reported it when the plan was drawn up
    home: str  # the host it belongs to: where a bring back returns it
    action: str = ""  # the child operation's kind; "" when nothing is done to it
    fate: str = ""  # what will happen to it, in words
    target: str = ""  # for a move: where to
    strategy: str = ""
    strategy_reason: str = ""
    expected_downtime: float | None = None
    expected_basis: str = ""
    problems: list[str] = field(default_factory=list)  # why it cannot be checkpointed/moved
    warnings: list[str] = field(default_factory=list)  # risks and advisory checks
    candidates: dict[str, str] = field(default_factory=dict)  # host -> "" (fits) or why not
    checks: list[dict] = field(default_factory=list)  # the pre-flight for the chosen target

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Subject:
    """One container of the host as gathered: its row, what LXD reported, its risks, and
    the strategy recommended towards each candidate host (operations.requests)."""

    name: str
    instance: int
    status: str
    definition: dict  # architecture, profiles, expanded devices: what the checks read
    risks: list[Risk] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # why it cannot be checkpointed at all
    memory: int = 0  # bytes in use
    started_at: dt.datetime | None = None
    stateful: bool = False  # it has saved state
    strategies: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (how, why)
    # host -> strategy -> downtime measured on this container's pool drivers (its candidate's
    # own `expected`, over any pools, when absent)
    expected: dict[str, dict[str, tuple[float | None, str]]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "Running"


@dataclass
class Candidate:
    """A host that might take containers, as gathered: its side for the pre-flight, why it
    takes none (maintenance...), the names it already has, its free memory, and the
    downtime each strategy had towards it (from measured history)."""

    side: Side
    closed: str = ""
    taken: set[str] = field(default_factory=set)
    free_memory: int | None = None
    expected: dict[str, tuple[float | None, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.side.name


@dataclass
class Option:
    """How a container could move to one candidate."""

    strategy: str
    reason: str
    checks: list[Check]


def checkpoint_blockers(kind: str, config: dict, devices: dict, server: str) -> list[str]:
    """Why a container cannot be checkpointed at all (not merely at risk)."""
    found = [
        f"{risk.subject}: {risk.reason}"
        for risk in checkpoint_risks(config, devices)
        if risk.reason == NIC
    ]
    if kind != "container":
        found.append("A virtual machine: the panel checkpoints containers only.")
    if server == "incus" and config.get("migration.stateful") != "true":
        found.append(
            "Incus checkpoints a container only with migration.stateful=true; set it on the "
            "container (it can be set while it runs)."
        )
    return found


def in_start_order(subjects: list[Subject]) -> list[Subject]:
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(subjects, key=lambda s: (s.started_at or never, s.name))


def untouched(item: Item, fate: str) -> Item:
    item.fate = fate
    return item


def plan_checkpoint(
    subjects: list[Subject],
    host: str,
    refusal: str,
    policy: str,
    skip: set[str],
    expected: tuple[float | None, str] = NO_ESTIMATE,
) -> list[Item]:
    """Checkpoint in place: every running container stopped statefully on its host.
    `refusal` says why the host cannot checkpoint at all ('' when it can)."""
    items = []
    for subject in reversed(in_start_order(subjects)):
        item = Item(subject.name, subject.instance, host, subject.status, home=host)
        items.append(item)
        if subject.name in skip:
            untouched(item, SKIPPED)
        elif not subject.running:
            saved = " with its saved state" if subject.stateful else ""
            untouched(item, f"already {subject.status.upper()}{saved}: stays as it is")
        elif refusal or subject.blockers:
            item.problems = ([refusal] if refusal else []) + subject.blockers
            stays(item, policy, "it cannot be checkpointed")
        else:
            item.action = STATEFUL_STOP
            item.fate = "checkpointed: stopped with its state saved; bring back restores it"
            item.warnings = [f"{risk.subject}: {risk.reason}" for risk in subject.risks]
            item.expected_downtime, item.expected_basis = expected
    return items


def stays(item: Item, policy: str, why: str) -> None:
    """A running container that cannot be checkpointed or moved: the admin's policy."""
    if item.status != "Running":
        item.fate = f"stays {item.status.upper()} on {item.at}: {why}"
    elif policy == STOP:
        item.action = CLEAN_STOP
        item.fate = f"stopped cleanly on {item.at}: {why}; bring back starts it afresh"
    else:
        item.fate = f"left running on {item.at}: {why}"


def plan_evacuation(
    subjects: list[Subject],
    source: Side,
    candidates: list[Candidate],
    policy: str,
    chosen: dict[str, str],
    skip: set[str],
) -> list[Item]:
    """Evacuate: every container to another host, with the target the admin chose for it
    (`chosen`: name -> host) or, automatically, the fitting host with the most free memory
    left. Running ones move with the recommended strategy, stopped ones as they are."""
    free = {candidate.name: candidate.free_memory for candidate in candidates}
    given = {candidate.name: 0 for candidate in candidates}
    items = []
    for subject in reversed(in_start_order(subjects)):
        item = Item(subject.name, subject.instance, source.name, subject.status, home=source.name)
        items.append(item)
        if subject.name in skip:
            untouched(item, SKIPPED)
            continue
        options = {}
        for candidate in candidates:
            why_not, option = fit(subject, source, candidate, policy, free[candidate.name])
            item.candidates[candidate.name] = why_not
            if option is not None:
                options[candidate.name] = option
        wanted = chosen.get(subject.name, "")
        if wanted and wanted not in options:
            why = item.candidates.get(wanted) or "it is not a host that can take containers"
            item.problems = [f"It cannot move to {wanted}: {why}"]
            stays(item, policy, "it cannot move where it was sent")
            continue
        pick = wanted or best(options, free, given)
        if pick is None:
            item.problems = [f"{host}: {why}" for host, why in item.candidates.items()]
            stays(item, policy, "no other host can take it")
            continue
        candidate = next(c for c in candidates if c.name == pick)
        move(item, subject, candidate, options[pick])
        given[pick] += 1
        if subject.running and free[pick] is not None:
            free[pick] = (free[pick] or 0) - subject.memory
    return items


def fit(
    subject: Subject, source: Side, candidate: Candidate, policy: str, free: int | None
) -> tuple[str, Option | None]:
    """Whether the container can move to the candidate, and how; else why not."""
    if candidate.closed:
        return candidate.closed, None
    checks = run_checks(
        source,
        candidate.side,
        subject.definition,
        "",
        subject.name,
        subject.name in candidate.taken,
    )
    if not subject.running:
        stops = blocked(checks, "stopped")
        option = Option("stopped", "The container is stopped: it moves as it is.", checks)
        return (reasons(stops), None) if stops else ("", option)
    if free is not None and subject.memory > free:
        return f"not enough free memory: it uses {mib(subject.memory)}, {mib(free)} free", None
    strategy, reason = subject.strategies.get(candidate.name, ("cold", "no recommendation"))
    platforms = {side.facts.get("server", "lxd") for side in (source, candidate.side)}
    if strategy in LIVE_STRATEGIES and len(platforms) > 1:
        stops = [Check("platform", "Both hosts run the same platform", FAIL, ACROSS_PLATFORMS)]
    elif strategy in LIVE_STRATEGIES and subject.blockers:
        stops = [Check("checkpoint", "It can be checkpointed", FAIL, "; ".join(subject.blockers))]
    elif strategy in LIVE_STRATEGIES:
        stops = blocked(checks, strategy)
    else:  # recommend() says cold only when a host cannot checkpoint
        stops = [Check("criu", "Both hosts can checkpoint", FAIL, reason)]
    if not stops:
        return "", Option(strategy, reason, checks)
    if policy == COLD and not blocked(checks, "cold"):
        why = f"Its running state cannot move ({reasons(stops)}): moved cold, as chosen."
        return "", Option("cold", why, checks)
    return reasons(stops), None


def reasons(checks: list[Check]) -> str:
    return "; ".join(f"{check.label}: {check.reason}" for check in checks)


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def best(options: dict[str, Option], free: dict[str, int | None], given: dict[str, int]):
    """The automatic target: a stateful move before a cold one, then the most free memory
    left, then the fewest containers given so far (spreading them)."""
    if not options:
        return None
    return min(
        options,
        key=lambda host: (options[host].strategy == "cold", -(free[host] or 0), given[host], host),
    )


def move(item: Item, subject: Subject, candidate: Candidate, option: Option) -> None:
    item.action, item.target = MIGRATE, candidate.name
    item.strategy, item.strategy_reason = option.strategy, option.reason
    restart = " (its processes restart)" if option.strategy == "cold" and subject.running else ""
    item.fate = f"moves to {candidate.name}: {LABELS[option.strategy]}{restart}"
    item.checks = [check.as_dict() for check in option.checks]
    item.warnings = [
        f"{check.label}: {check.reason}" for check in option.checks if check.status == WARN
    ]
    if subject.running:
        item.warnings += [f"{risk.subject}: {risk.reason}" for risk in subject.risks]
    estimates = subject.expected.get(candidate.name) or candidate.expected
    expected = estimates.get(option.strategy, NO_ESTIMATE)
    item.expected_downtime, item.expected_basis = expected


@dataclass
class Away:
    """Where one container of an earlier checkpoint or evacuation is now."""

    earlier: dict  # the earlier plan's item
    subject: Subject | None  # where it is now (None: on neither host)
    at: str  # the host it is on now ("" when gone)


def plan_bring_back(
    away: list[Away],
    home: Candidate,
    sides: dict[str, Side],
    policy: str,
    skip: set[str],
    restore: tuple[float | None, str] = NO_ESTIMATE,
) -> list[Item]:
    """Undo a checkpoint or an evacuation, in the order the containers were started (the
    reverse of the earlier plan's): start the stopped ones at home, move the moved ones home
    the way they went. A running container that cannot move home statefully stays where it
    runs unless the policy says to move it cold."""
    items = []
    for one in reversed(away):
        earlier, subject = one.earlier, one.subject
        status = subject.status if subject else "gone"
        where = one.at or earlier["at"]
        instance = subject.instance if subject else None
        item = Item(earlier["name"], instance, where, status, home=home.name)
        items.append(item)
        if item.name in skip:
            untouched(item, SKIPPED)
        elif subject is None:
            places = " or ".join(filter(None, [earlier["at"], earlier.get("target")]))
            item.problems = [f"It is no longer on {places}."]
            untouched(item, "nothing to bring back: the container is gone")
        elif one.at == home.name:
            start_at_home(item, subject, restore)
        else:
            why_not, option = fit(subject, sides[one.at], home, policy, None)
            if option is None:
                item.problems = [why_not]
                item.fate = f"stays {status.upper()} on {one.at}: it cannot move home"
            else:
                move(item, subject, home, option)
    return items


def start_at_home(item: Item, subject: Subject, restore: tuple[float | None, str]) -> None:
    if subject.running:
        untouched(item, f"already running on {item.at}")
    elif subject.status != "Stopped":
        item.problems = [f"It is {subject.status.upper()}; bring back starts only stopped ones."]
        untouched(item, f"stays {subject.status.upper()}: look at it on its page")
    else:
        item.action = START
        item.fate = (
            "started from its saved state (CRIU restores it)"
            if subject.stateful
            else "started afresh (it has no saved state)"
        )
        if subject.stateful:
            item.expected_downtime, item.expected_basis = restore


def summarise(items: list[Item], mode: str) -> str:
    """One line for the plan: how many get which action and how many cannot."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.action or "none"] = counts.get(item.action or "none", 0) + 1
    words = {
        STATEFUL_STOP: "checkpointed",
        CLEAN_STOP: "stopped cleanly",
        MIGRATE: "moved",
        START: "started",
        "none": "left as they are",
    }
    parts = [f"{counts[key]} {words[key]}" for key in words if counts.get(key)]
    trouble = sum(1 for item in items if item.problems)
    verb = "checkpointed" if mode == "checkpoint" else "moved"
    tail = f"; {trouble} cannot be {verb}" if trouble else ""
    return f"{len(items)} containers: " + ", ".join(parts) + tail + "."
