"""Logs that say which operation each line is about, and a JSON format for log collectors
(PANEL_LOG_FORMAT=json): one object per line with time, level, logger, message and
operation_id. The runner sets the operation for everything logged while it works on one,
pylxd's and requests' lines included."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar

current_operation: ContextVar[int | None] = ContextVar("current_operation", default=None)


@contextlib.contextmanager
def operation_context(operation_id: int) -> Iterator[None]:
    token = current_operation.set(operation_id)
    try:
        yield
    finally:
        current_operation.reset(token)


class OperationIdFilter(logging.Filter):
    """Adds `operation_id` to every record (None outside an operation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "operation_id", None) is None:
            record.operation_id = current_operation.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "operation_id": getattr(record, "operation_id", None),
        }
        # The redaction filter leaves the traceback it cleaned in exc_text: use that one.
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def equip(handler: logging.Handler, as_json: bool) -> None:
    """Give a handler someone else set up (Celery's) the operation id, and JSON if asked."""
    handler.addFilter(OperationIdFilter())
    if as_json:
        handler.setFormatter(JsonFormatter())
