"""structlog for central: JSON lines when stderr is not a terminal (journald, files), readable on a tty.

Logs go to stderr so a command's stdout stays its result (e.g. the API key on the last line).
"""

from __future__ import annotations

import logging
import sys

import structlog

from protocols.logstream import STDERR


def setup_logging(level: str = "warning", json: bool | None = None) -> None:
    """Configure structlog once; ``json`` None means "when stderr is not a terminal"."""
    if json is None:
        json = not sys.stderr.isatty()
    lvl = getattr(logging, level.upper(), logging.WARNING)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
