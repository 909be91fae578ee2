"""Structured logging: structlog, with the standard library's loggers routed through it.

The platform's own loggers render straight to stderr (structlog's filtering logger, no stdlib
`LogRecord` on the way: a request's log line costs a few microseconds instead of tens); the
libraries' stdlib loggers (Uvicorn, streaq, SQLAlchemy) go through a `ProcessorFormatter` that
runs the same processors and renderer, so every line has one shape.

With tracing on, a line written while a span is active carries its `trace_id` and `span_id`; with
tracing off neither field is written (and nothing is looked up)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from computebill.config import Settings
from computebill.tracing import add_trace_ids, enabled


class _NamedWriteLogger(structlog.WriteLogger):
    """A `WriteLogger` that keeps the name it was asked for, for `add_logger_name`."""

    def __init__(self, name: str, file: TextIO) -> None:
        super().__init__(file)
        self.name = name


def _named_logger_factory(file: TextIO) -> Any:
    def factory(*args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(str(args[0]) if args else "", file)

    return factory


def configure_logging(settings: Settings) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if enabled(settings):
        shared.append(add_trace_ids)
    renderer: structlog.types.Processor
    if settings.log_as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()

    level = logging.getLevelName(settings.log_level.upper())
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_named_logger_factory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Uvicorn's access log duplicates our request log line, which carries the request id.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error", "streaq"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
