"""Celery workers: `celery -A workers worker`. One module per kind of work."""

from workers.celery import app

__all__ = ["app"]
