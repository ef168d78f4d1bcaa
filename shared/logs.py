"""Structured logs: JSON lines for machines, pretty lines on a terminal.

Context (service, event id, notification id, correlation id) is bound with
``structlog.contextvars`` so every line inside a handler carries it. Libraries
that log through the standard ``logging`` module (aiokafka, uvicorn) are rendered
the same way, and a line a library repeats (a broker that does not answer makes
aiokafka log many times a second) is let through a few times per window, then
counted and summarised instead of flooding the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import structlog

_configured = False

#: Per library message: this many lines per window, then a count.
BURST = 5
WINDOW_SECONDS = 30.0


class RateLimit(logging.Filter):
    """Lets ``BURST`` lines of one (logger, message template) through per window."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_SECONDS):
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            start, count, dropped = self._seen.get(key, (now, 0, 0))
            if now - start > self.window:
                if dropped:
                    record.suppressed_before = int(dropped)
                start, count, dropped = now, 0, 0
            count += 1
            allowed = count <= self.burst
            if not allowed:
                dropped += 1
            self._seen[key] = [start, count, dropped]
            if len(self._seen) > 10_000:
                self._seen.clear()
        return allowed


def _suppressed(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    record = event.get("_record")
    if record is not None and getattr(record, "suppressed_before", None):
        event["similar_lines_suppressed"] = record.suppressed_before
    return event


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    global _configured
    pretty = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    # One stream, one lock: our lines and the libraries' (through logging) are written
    # whole, never one inside the other, however many threads log at once.
    handler = logging.StreamHandler(sys.stderr)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _LockedWriter(handler),
        cache_logger_on_first_use=True,
    )
    handler.addFilter(RateLimit())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _suppressed],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    _configured = True


class _LockedWriter:
    """structlog's output, written under the logging handler's own lock (one write per line)."""

    def __init__(self, handler: logging.StreamHandler):  # type: ignore[type-arg]
        self.handler = handler

    def msg(self, message: str) -> None:
        with self.handler.lock:  # type: ignore[union-attr]
            self.handler.stream.write(message + "\n")
            self.handler.stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


def get_logger(component: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    if not _configured:
        configure()
    return structlog.get_logger(component=component, **bound)


bind = structlog.contextvars.bound_contextvars
