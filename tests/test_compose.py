"""No Docker engine runs here, so check docker-compose.yml, the Dockerfile and .dockerignore
against the code they name; tests/test_compose_services.py runs each service's command."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
PANEL_SERVICES = ["migrate", "web", "worker", "beat", "events"]


def documented_variables() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def settings_source() -> str:
    return "\n".join((ROOT / "panel" / name).read_text() for name in ("settings.py", "env.py"))


def test_it_describes_the_production_topology():
    assert {"migrate", "web", "worker", "beat", "events", "proxy", "redis", "db"} == set(SERVICES)
    for name, service in SERVICES.items():
        if name != "migrate":
            assert "healthcheck" in service, f"{name} has no health check"
    assert set(COMPOSE["volumes"]) == {"panel-data", "redis-data", "db-data", "caddy-data"}


def test_migrate_runs_once_and_everything_else_waits_for_it():
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["command"] == "python manage.py migrate --noinput"
    for name in ("web", "worker", "beat"):
        assert "migrate" not in SERVICES[name]["command"], f"{name} migrates at start"
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_the_web_is_reached_only_through_the_tls_proxy():
    assert "ports" not in SERVICES["web"] and SERVICES["web"]["expose"] == ["8000"]
    environment = SERVICES["web"]["environment"]
    assert environment["PANEL_SECURE"] == "${PANEL_SECURE:-true}"
    assert environment["PANEL_TRUSTED_PROXIES"] == "${PANEL_TRUSTED_PROXIES:-1}"
    proxy = SERVICES["proxy"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert "web:8000" in (ROOT / "deploy" / "Caddyfile").read_text()


def test_every_service_command_names_real_modules():
    assert SERVICES["web"]["command"].startswith("gunicorn panel.wsgi ")
    importlib.import_module("panel.wsgi")
    for name in ("worker", "beat"):
        command = SERVICES[name]["command"]
        app_module = re.search(r"celery -A (\S+)", command).group(1)
        assert hasattr(importlib.import_module(app_module), "app"), f"{name}: {app_module}.app"
    worker_queue = re.search(r"-Q (\S+)", SERVICES["worker"]["command"]).group(1)
    from django.conf import settings

    assert worker_queue == settings.CELERY_TASK_DEFAULT_QUEUE


def test_every_panel_setting_in_compose_is_read_by_settings_and_documented():
    source = settings_source()
    documented = documented_variables()
    for name in PANEL_SERVICES:
        for variable in SERVICES[name]["environment"]:
            assert f'"{variable}"' in source, f"{variable} is set in compose but never read"
            assert variable in documented, f"{variable} is missing from .env.example"


def test_the_panel_needs_passwords_for_redis_and_postgres():
    environment = SERVICES["web"]["environment"]
    assert environment["PANEL_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert ":${POSTGRES_PASSWORD:?" in environment["PANEL_DATABASE_URL"]


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


def test_the_image_holds_runtime_packages_and_its_own_static_files():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
    runtime = (ROOT / "requirements.txt").read_text().lower()
    for tool in ("pytest", "ruff", "playwright", "mypy", "django-stubs"):
        assert f"\n{tool}" not in runtime, f"{tool} would be in the image"
    assert "PANEL_STATIC_ROOT=/app/staticfiles" in dockerfile
    assert "collectstatic" in dockerfile


def test_nothing_secret_or_local_goes_into_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in ("var/", ".venv/", ".env", ".git/", "tests/", "lab/"):
        assert entry in ignored, f"{entry} would be copied into the image"


def test_the_production_page_names_every_setting_and_every_service():
    page = (ROOT / "docs" / "production.md").read_text()
    for variable in documented_variables():
        assert f"`{variable}`" in page, f"{variable} is not in production.md"
    for name in SERVICES:
        assert f"| {name} |" in page, f"the {name} service is not in production.md's table"
