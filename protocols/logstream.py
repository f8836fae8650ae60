"""The stream every hallsync process logs to: whatever ``sys.stderr`` is at the moment of writing.

structlog's ``PrintLoggerFactory(file=sys.stderr)`` keeps the stream it was given, and with
``cache_logger_on_first_use`` every module's logger keeps it for good. When the stream is later
replaced and closed (a command run in-process under a test's captured stderr, a daemon that re-opens
its stderr), every later log line raised ``ValueError: I/O operation on closed file`` inside the caller
— central's ingest worker task died of it. Looking ``sys.stderr`` up at each write cannot go stale.
"""

from __future__ import annotations

import sys


class CurrentStderr:
    """A file-like that writes to the current ``sys.stderr``."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


STDERR = CurrentStderr()
