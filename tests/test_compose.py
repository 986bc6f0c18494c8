"""No Docker engine runs here, so check docker-compose.yml against the code it names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")


def documented_variables() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def settings_source() -> str:
    return "\n".join((ROOT / "panel" / name).read_text() for name in ("settings.py", "env.py"))


def test_it_describes_the_production_topology():
    assert {"web", "worker", "beat", "redis", "db"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert "healthcheck" in service, f"{name} has no health check"
    assert set(COMPOSE["volumes"]) == {"panel-data", "redis-data", "db-data"}


def test_every_service_command_names_real_modules():
    assert "gunicorn panel.wsgi" in SERVICES["web"]["command"]
    importlib.import_module("panel.wsgi")
    for name in ("worker", "beat"):
        command = SERVICES[name]["command"]
        app_module = re.search(r"celery -A (\S+)", command).group(1)
        assert hasattr(importlib.import_module(app_module), "app"), f"{name}: {app_module}.app"
    worker_queue = re.search(r"-Q (\S+)", SERVICES["worker"]["command"]).group(1)
    from django.conf import settings

    assert worker_queue == settings.CELERY_TASK_DEFAULT_QUEUE


def test_every_panel_setting_in_compose_is_read_by_settings_and_documented():
    environment = SERVICES["web"]["environment"]
    source = settings_source()
    documented = documented_variables()
    for variable in environment:
        assert f'"{variable}"' in source, f"{variable} is set in compose but settings never read it"
        assert variable in documented, f"{variable} is missing from .env.example"


def test_every_interpolated_variable_is_documented():
    text = (ROOT / "docker-compose.yml").read_text()
    assert set(VARIABLE.findall(text)) <= documented_variables()


def test_every_variable_settings_reads_is_documented():
    read = set(re.findall(r'"(PANEL_[A-Z_]+)"', settings_source()))
    assert read, "the settings read no variables?"
    assert read <= documented_variables()


def test_services_depend_only_on_services_that_exist():
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
