"""The Celery application. Configuration lives in panel/settings.py (CELERY_* names).

Each domain keeps its tasks beside its work (panel/<domain>/tasks.py); the request side
sends them by name (panel/broker.py). The agent's own tasks live in workers/agent.py.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")

app = Celery(
    "panel",
    include=[
        "panel.hosts.tasks",
        "panel.operations.tasks",
        "panel.bundles.tasks",
        "panel.notify.tasks",
        "panel.maintenance.tasks",
        "workers.agent",
    ],
)
app.config_from_object("django.conf:settings", namespace="CELERY")


@after_setup_logger.connect
@after_setup_task_logger.connect
def equip_worker_logs(logger, **kwargs) -> None:
    """Celery sets up its own handlers in workers: give them the operation id on every line,
    the JSON format when PANEL_LOG_FORMAT=json (panel/logs.py), and the redaction policy's
    filter, so a worker's log lines hold no secret either (panel/redaction.py)."""
    from django.conf import settings

    from panel.logs import equip
    from panel.redaction import RedactingFilter

    for handler in logger.handlers:
        equip(handler, as_json=settings.LOG_FORMAT == "json")
        handler.addFilter(RedactingFilter())
