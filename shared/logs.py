"""Structured logs: JSON lines for machines, pretty lines on a terminal.

Context (service, event id, notification id, correlation id) is bound with
``structlog.contextvars`` so every line inside a handler carries it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    global _configured
    pretty = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _configured = True


def get_logger(component: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    if not _configured:
        configure()
    return structlog.get_logger(component=component, **bound)


bind = structlog.contextvars.bound_contextvars
