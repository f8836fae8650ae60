"""SAS serial transports, chosen by configuration (python-can style): ``uart``, ``pty``, ``memory``.

Use :func:`open_transport` / :func:`make_transport` with a kind, or let :func:`default_kind` pick
from the path (a ``/dev/pts/*`` path is a pty, anything else a UART).
"""

from __future__ import annotations

from .base import Framing, SasTransport
from .errors import PortClosed, PortNotFound, PortPermission, TransportError
from .memory import MemoryTransport, memory_pair
from .pty import PtyTransport
from .uart import UartTransport, uart_attrs

KINDS = ("uart", "pty")


def default_kind(path: str) -> str:
    """``pty`` for ``/dev/pts/*`` (and the simulator's symlinks to them), else ``uart``."""
    import os

    real = os.path.realpath(path)
    return "pty" if real.startswith("/dev/pts/") else "uart"


def make_transport(path: str, kind: str | None = None, framing: Framing = "marks") -> SasTransport:
    """An unopened transport for ``path``; ``kind`` None means :func:`default_kind`."""
    kind = kind or default_kind(path)
    if kind == "pty":
        return PtyTransport(path, framing)
    if kind == "uart":
        return UartTransport(path, framing)
    raise ValueError(f"unknown transport {kind!r} (choose from {', '.join(KINDS)})")


__all__ = [
    "KINDS", "Framing", "MemoryTransport", "PortClosed", "PortNotFound", "PortPermission", "PtyTransport",
    "SasTransport", "TransportError", "UartTransport", "default_kind", "make_transport", "memory_pair",
    "uart_attrs",
]
