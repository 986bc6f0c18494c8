"""Celery: `celery -A workers worker` (the app, workers/celery.py) and the host agent
(`python -m workers.agent`, workers/agent.py). The tasks live in their domains."""

from workers.celery import app

__all__ = ["app"]
