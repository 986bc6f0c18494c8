"""The one owner of an operation's life (panel/operations/lifecycle.py): every transition is a
conditional UPDATE that says whether it won, and nothing else in the code writes a status.
The race with two real processes (a worker coming back after the reconciler ended its
operation) is tests/test_lifecycle_lab.py; the layout rules (web code never imports task
modules, no import loop) are checked here by reading the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from panel.operations import lifecycle
from panel.operations.models import Operation
from tests.helpers import make_host, make_instance

ROOT = Path(__file__).resolve().parent.parent
CODE = [p for p in (ROOT / "panel").rglob("*.py") if "migrations" not in p.parts]
CODE += list((ROOT / "workers").rglob("*.py"))
Status = Operation.Status


def claimed_operation(kind: str = "stateful_snapshot", host: str = "h1") -> Operation:
    instance = make_instance(make_host(host))
    operation = lifecycle.request(instance, kind, None, {"snapshot": "s1"})
    claim = lifecycle.claim(operation.pk)
    assert claim.verdict == lifecycle.CLAIMED
    return Operation.objects.get(pk=operation.pk)


@pytest.mark.django_db
def test_a_claim_is_won_once_and_carries_a_token():
    instance = make_instance(make_host())
    operation = lifecycle.request(instance, "snapshot", None, {"snapshot": "s1"})
    first, second = lifecycle.claim(operation.pk), lifecycle.claim(operation.pk)
    assert first.verdict == lifecycle.CLAIMED and len(first.token) == 32
    assert second == lifecycle.Claim(lifecycle.NOT_PENDING)
    operation.refresh_from_db()
    assert operation.status == Status.RUNNING and operation.claim_token == first.token


@pytest.mark.django_db
def test_a_worker_that_comes_back_after_the_reconciler_changes_nothing():
    operation = claimed_operation()
    reconciler_copy = Operation.objects.get(pk=operation.pk)
    assert lifecycle.end_by_reconciler(
        reconciler_copy, Status.INTERRUPTED, "The worker stopped reporting.", "h1: RUNNING"
    )
    verdict = Operation.objects.values().get(pk=operation.pk)

    assert not lifecycle.enter_stage(operation, "verifying", "Checking.")
    assert not lifecycle.record_progress(operation, "50%")
    assert not lifecycle.remember_lxd_operation(operation, "abc")
    assert not lifecycle.keep_alive(operation)
    assert lifecycle.cancel_asked(operation) is None
    assert not lifecycle.still_owned(operation)
    assert not lifecycle.finish(operation, Status.SUCCEEDED, "Stateful snapshot taken.")
    assert Operation.objects.values().get(pk=operation.pk) == verdict


@pytest.mark.django_db
def test_the_reconciler_does_not_overwrite_a_worker_that_finished_first():
    operation = claimed_operation()
    assert lifecycle.finish(operation, Status.SUCCEEDED, "Stateful snapshot taken.")
    late = Operation.objects.get(pk=operation.pk)
    assert not lifecycle.end_by_reconciler(late, Status.INTERRUPTED, "Silent.", "?")
    late.refresh_from_db()
    assert late.status == Status.SUCCEEDED and late.outcome == "Stateful snapshot taken."


@pytest.mark.django_db
def test_a_worker_cannot_write_with_another_workers_claim():
    operation = claimed_operation()
    impostor = Operation.objects.get(pk=operation.pk)
    impostor.claim_token = "0" * 32
    assert not lifecycle.finish(impostor, Status.FAILED, "Not mine.")
    assert lifecycle.finish(operation, Status.SUCCEEDED, "Mine.")


@pytest.mark.django_db
def test_cancel_ends_a_queued_operation_and_only_asks_a_running_one():
    instance = make_instance(make_host())
    queued = lifecycle.request(instance, "snapshot", None, {"snapshot": "s1"})
    assert lifecycle.cancel(queued, "ada") == "cancelled"
    assert lifecycle.claim(queued.pk).verdict == lifecycle.NOT_PENDING
    running = claimed_operation(host="h2")
    assert lifecycle.cancel(running, "ada") == "requested"
    assert lifecycle.cancel_asked(running) is True
    assert lifecycle.finish(running, Status.CANCELLED, "Cancelled.")
    assert lifecycle.cancel(running, "ada") == "ended"


@pytest.mark.django_db
def test_a_success_after_a_cancel_came_too_late_says_so_and_only_then():
    late = claimed_operation(host="h1")
    assert lifecycle.cancel(late, "ada") == "requested"
    assert lifecycle.finish(late, Status.SUCCEEDED, "Migrated to h2.")
    stored = Operation.objects.get(pk=late.pk)
    assert stored.outcome == late.outcome == "Migrated to h2." + lifecycle.LATE_CANCEL
    assert stored.events.last().message.endswith(lifecycle.LATE_CANCEL)
    uncancelled = claimed_operation(host="h2")
    assert lifecycle.finish(uncancelled, Status.SUCCEEDED, "Migrated to h1.")
    assert Operation.objects.get(pk=uncancelled.pk).outcome == "Migrated to h1."
    failed = claimed_operation(host="h3")
    assert lifecycle.cancel(failed, "ada") == "requested"
    assert lifecycle.finish(failed, Status.FAILED, "The restore failed.")
    assert Operation.objects.get(pk=failed.pk).outcome == "The restore failed."


@pytest.mark.django_db
def test_a_second_request_while_one_is_active_is_refused_naming_it():
    operation = claimed_operation()
    with pytest.raises(lifecycle.Busy, match=f"#{operation.pk}"):
        lifecycle.request(operation.instance, "stop", None)


# --- the layout's rules, read from the code ----------------------------------------------------

WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_update"}


def status_writes(path: Path) -> list[str]:
    """Where a file writes an operation's status: assigns `<operation>.status`, saves a whole
    operation, or passes `status=Operation.Status...` (or its `Status` alias) to a write."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                is_status = isinstance(target, ast.Attribute) and target.attr == "status"
                if is_status and "operation" in ast.unparse(target).lower():
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called = ast.unparse(node.func.value).lower()
            if node.func.attr == "save" and "operation" in called:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if node.func.attr in WRITERS:
                for keyword in node.keywords:
                    value = ast.unparse(keyword.value)
                    if keyword.arg == "status" and value.startswith(
                        ("Operation.Status", "Status.")
                    ):
                        found.append(f"{path.name}:{node.lineno}: status={value}")
    return found


def test_only_the_lifecycle_module_writes_an_operations_status():
    lifecycle_path = ROOT / "panel" / "operations" / "lifecycle.py"
    assert status_writes(lifecycle_path), "the check must see the lifecycle's own writes"
    assert [w for path in CODE if path != lifecycle_path for w in status_writes(path)] == []


def imports_of(path: Path) -> set[str]:
    """Every module a file imports at run time, function-local imports included (imports
    for type checking only are not run)."""
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            block.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_web_code_never_imports_a_task_module():
    web = [*(ROOT / "panel" / "web").rglob("*.py"), *(ROOT / "panel" / "management").rglob("*.py")]
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in web
        for name in imports_of(path)
        if name.endswith(".tasks") or ".tasks." in name or name.startswith("workers")
    }
    assert offenders == set()


def test_there_is_no_import_loop_in_the_project():
    modules = {module_name(path): path for path in CODE}
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a loop between domains.
    graph = {
        name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()
    }
    loops, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                loops.append(" -> ".join([*trail[trail.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert loops == []


def test_every_task_name_the_code_sends_is_a_registered_task():
    from workers.celery import app

    app.loader.import_default_modules()
    sent = {
        match
        for path in CODE
        for match in re.findall(r"\"(panel\.[a-z_.]+\.tasks\.[a-z_]+)\"", path.read_text())
    }
    assert sent and sent <= set(app.tasks)
