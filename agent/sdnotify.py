"""sd_notify(3) in a few lines: tell systemd we are ready, alive, or stopping.

Why our own and not a package: the protocol is one datagram of ``KEY=VALUE`` lines on the unix
socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace), and a
dependency for that is more to audit on a hall PC than the code. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op, so the same binary runs under a terminal, tests and units.
Sending never blocks and never raises: a lost ping makes systemd restart us, which is the point of
the watchdog, while a crash here would be worse than a missed ping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``); True if a notify socket took it."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_period(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``, as sd_watchdog_enabled(3)
    advises), or None when systemd asked for no watchdog or asked another process (``WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2_000_000
