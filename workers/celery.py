"""The Celery application. Configuration lives in panel/settings.py (CELERY_* names)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")

app = Celery(
    "panel",
    include=[
        "workers.hosts",
        "workers.operations",
        "workers.schedules",
        "workers.migrations",
        "workers.bundles",
        "workers.agent",
        "workers.reconciler",
    ],
)
app.config_from_object("django.conf:settings", namespace="CELERY")
