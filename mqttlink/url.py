"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS, default port 8883).

A TLS URL may name the CA that signed the broker's certificate: ``mqtts://…:8883?ca=/etc/hallsync/ca.pem``.
Why a query parameter rather than one more flag: the whole way to reach HQ (host, account, password,
trust anchor) then lives in one string, i.e. one ``mqtt = "…"`` line in the agent's or central's
``--config`` file. Without ``ca`` the system's trust store is used; server verification is never
turned off.

The password is better kept out of the URL (issue 16: a URL given with ``--mqtt`` shows in ``ps``):
:func:`broker_url` adds it from a file (``--mqtt-password-file``, config key ``mqtt_password_file``)
or from the environment variable ``HALLSYNC_MQTT_PASSWORD``; the agent's and central's CLIs both
call it, so the rules below hold for both:

* the file wins over the environment variable (it was named explicitly; the variable may be inherited);
* a URL that holds a password *and* a file or variable is refused: two passwords, one of them stale,
  and the one not used would stay lying around in a config file;
* the file's content is the password, one trailing newline (LF or CRLF) stripped; an empty
  file or one of several lines is refused;
* a file other users may read or write (mode ``o+r``/``o+w``) is refused, as ssh refuses such a key:
  install it ``0640 root:hallsync`` (the service's group);
* a password needs a username in the URL (MQTT sends no password without one).

Errors name the file or variable and what is wrong with it, never the password (they reach logs).
"""

from __future__ import annotations

import dataclasses
import os
import stat
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


PASSWORD_ENV = "HALLSYNC_MQTT_PASSWORD"
"""The environment variable that may hold the broker password (the file wins over it)."""


def broker_url(text: str, *, password_file: str | os.PathLike[str] | None = None,
               env_password: str | None = None) -> BrokerUrl:
    """Parse ``text`` and add the password from ``password_file`` or ``env_password`` (the value of
    :data:`PASSWORD_ENV`; None: not set), following the rules of the module docstring.

    The caller passes the variable's value rather than this reading ``os.environ`` so a CLI can take it
    out of its environment first (child processes then do not inherit it). ValueError names the problem.
    """
    url = parse_broker_url(text)
    if password_file is not None and not isinstance(password_file, str | os.PathLike):
        raise ValueError(f"mqtt_password_file must be a file name, not {type(password_file).__name__}")
    if password_file is not None:
        password, source = read_password_file(password_file), f"password file {os.fspath(password_file)}"
    elif env_password is not None:
        if not env_password:
            raise ValueError(f"{PASSWORD_ENV} is set but empty")
        password, source = env_password, PASSWORD_ENV
    else:
        return url
    if url.password is not None:
        raise ValueError(f"broker URL {url} holds a password and the {source} gives one too: "
                         "remove the password from the URL")
    if url.username is None:
        raise ValueError(f"broker URL {url}: the {source} needs a username in the URL (mqtt://USER@host)")
    return dataclasses.replace(url, password=password)


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The password in ``path``: one line, its trailing newline stripped; refused when empty, of
    several lines, or open to other users. ValueError names the file and the problem."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ValueError(f"password file {name} is not a regular file")
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                raise ValueError(f"password file {name} is open to other users (mode {stat.S_IMODE(mode):04o}): "
                                 f"chmod o-rw {name} (e.g. 0640, group of the service)")
            raw = handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read password file {name}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"password file {name} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        raise ValueError(f"password file {name} is empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"password file {name} holds more than one line (it must hold only the password)")
    return text


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
