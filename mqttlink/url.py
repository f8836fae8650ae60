"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS, default port 8883).

A TLS URL may name the CA that signed the broker's certificate: ``mqtts://…:8883?ca=/etc/hallsync/ca.pem``.
Why a query parameter rather than one more flag: the whole way to reach HQ (host, account, password,
trust anchor) then lives in one string, i.e. one ``mqtt = "…"`` line in the agent's or central's
``--config`` file (mode 0640, so the password is not on a command line that ``ps`` shows). Without
``ca`` the system's trust store is used; server verification is never turned off.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    """PEM file of the CA(s) trusted for the broker's certificate (TLS only); None: the system store."""

    def __str__(self) -> str:
        """The URL without the password, safe for logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse a broker URL; a bad one raises ValueError naming what is wrong (never the password:
    errors end up in logs)."""
    parts = urllib.parse.urlsplit(text)
    shown = _redacted(parts)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {shown!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {shown!r}: no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"broker URL {shown!r}: {exc}") from None
    if parts.path not in ("", "/"):
        raise ValueError(f"broker URL {shown!r}: no path allowed")
    ca_file = _ca_file(parts.query, tls)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return BrokerUrl(parts.hostname, port, tls, username, password, ca_file)


def _redacted(parts: urllib.parse.SplitResult) -> str:
    """The URL as given with its password replaced by ``***``."""
    if parts.password is None:
        return parts.geturl()
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _ca_file(query: str, tls: bool) -> str | None:
    """The ``ca=FILE`` query parameter; any other parameter is a typo worth refusing.

    The messages leave the URL out: it may hold the password, and they end up in logs.
    The file is checked here so a typo stops the program at start, not at every reconnect.
    """
    if not query:
        return None
    try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError("broker URL: bad query (only ?ca=FILE is allowed)") from None
    unknown = sorted(set(params) - {"ca"})
    if unknown or len(params.get("ca", [])) != 1 or not params["ca"][0]:
        raise ValueError(f"broker URL: only one ?ca=FILE parameter is allowed, not {', '.join(sorted(params))}")
    if not tls:
        raise ValueError("broker URL: ?ca= needs mqtts:// (TLS)")
    ca = params["ca"][0]
    if not os.access(ca, os.R_OK):
        raise ValueError(f"broker URL: CA file {ca} is missing or not readable")
    return ca
