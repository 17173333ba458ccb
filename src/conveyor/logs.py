"""Logging set-up for Conveyor's own processes (libraries embedding Conveyor keep theirs).

Lines about a job carry its `job_id`, `queue`, `task`, `attempt` and `worker`
(`conveyor.log_context`): JSON lines as fields, text lines as a bracketed suffix.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from conveyor.config import Settings
from conveyor.log_context import JobContextFilter, record_fields, text_suffix

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: a field someone passed as an object still makes a line, not a crash.
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The plain format, with the job's fields appended to lines about a job."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + text_suffix(record)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log.format == "json" else TextFormatter())
    # On the handler, not a logger: records of every logger (a handler's "myapp" too)
    # pass through it.
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level.upper())
