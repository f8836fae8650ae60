"""Exit codes and the one-line errors of the diag commands."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2      # bad option, or a command that does not exist yet
EXIT_PORT = 3       # the port cannot be opened (missing, permission, busy)
EXIT_NO_ANSWER = 4  # the port is fine but nothing answers


class DiagError(Exception):
    """A failure worth one line on stderr and a non-zero exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
