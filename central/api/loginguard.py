"""Failed API logins: logged without the key, and rate-limited per client address (issue 16).

An API key is 256 bits, so guessing is hopeless — but unlimited guessing still costs a store lookup
per try and hides in no log. So: a request whose presented key is bad or unknown is a failure of its
client address (a request without any key is not: that is a browser or a script before login). After
``limit`` failures within ``window`` seconds of the first, the address gets ``429`` with
``Retry-After`` until that window ends, *before* its key is looked at — also for a good key, since a
lockout that still checked keys would still answer the guesser's question. Other addresses are not
affected. Behind a reverse proxy every client has the proxy's address: one guesser locks all out.

Log lines are throttled too: per address and window, one warning at its first failure and one when
the lockout starts (with the count); every failure and refusal is counted for ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from protocols.httpguard import DEFAULT_LOGIN_FAILURES, DEFAULT_LOGIN_WINDOW, FailureWindow

log = structlog.get_logger("central.api")


class LoginThrottle:
    """Per-address failure windows of the API's bearer keys (see the module docstring); ``limit`` 0: off."""

    def __init__(self, limit: int = DEFAULT_LOGIN_FAILURES, window: float = DEFAULT_LOGIN_WINDOW, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._windows = FailureWindow(limit, window)
        self.clock = clock
        self.failed = 0
        """Requests answered 401 for a bad or unknown key."""
        self.rate_limited = 0
        """Requests answered 429 without their key being checked."""

    def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait (and the request is counted as refused), or None: check its key."""
        wait = self._windows.retry_after(client, self.clock())
        if wait is not None:
            self.rate_limited += 1
        return wait

    def failure(self, client: str, path: str) -> None:
        """``client`` presented a bad or unknown key (never pass the key: it is not logged anywhere)."""
        self.failed += 1
        verdict = self._windows.failure(client, self.clock())
        if verdict == "first":
            log.warning("api_login_failed", client=client, path=path,
                        note="further failures from this address in the next "
                             f"{self._windows.window:g} s are counted, not logged")
        elif verdict == "locked":
            log.warning("api_login_rate_limited", client=client, failures=self._windows.limit,
                        window_s=self._windows.window)
