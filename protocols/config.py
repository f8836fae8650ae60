"""One configuration loader for every command: defaults < TOML file < environment < flags.

Every hallsync command (``hall-agent``, ``hall-central``, ``hall-sim``, ``hall demo``) resolves its
options the same way (design.md: a ``--config FILE`` can hold any option, and a flag overrides it):

1. the option's default;
2. the TOML file: its top-level keys (shared by every command of the program), then the command's own
   table (``[run]``, ``[diag.sas]``, ``[halls.add]`` …), later tables winning; ``-`` and ``_`` in a key
   are the same;
3. the environment: ``PREFIX`` + the option's name in upper case (``HALLSYNC_AGENT_DATA_DIR``,
   ``HALLSYNC_DEMO_BROKER``); an empty variable counts as unset; an option that acts on something
   (``--force``, ``--disable`` …) is never taken from the environment, which a process inherits;
4. the command-line flags.

A value from the file or the environment is checked and converted the way its flag would be (the
flag's ``type`` and ``choices``), so a bad one is refused with :class:`ConfigError` naming the file
and key or the variable. Flags arrive already parsed (argparse) and are taken as they are.

Options are described by :class:`Option`, usually derived from the command's argparse parser with
:func:`options_from_parser`. This module reads the given file and nothing else.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A config file, key or environment variable that cannot be used; the message names it."""


@dataclass(frozen=True)
class Option:
    """One option as the loader sees it.

    ``parse`` turns a string (an environment variable, a TOML string) into the value, as the flag's
    argparse ``type`` does (None: the string itself); ``boolean`` options take TOML booleans or the
    words ``1/true/yes/on`` and ``0/false/no/off``; ``choices`` limits the parsed value; ``env``
    False keeps the option out of the environment layer."""

    name: str
    parse: Callable[[str], Any] | None = None
    default: Any = None
    boolean: bool = False
    choices: tuple[Any, ...] | None = None
    env: bool = True


class Resolved(dict[str, Any]):
    """The merged options (a plain dict of name → value) and, per name, the layer that set it."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}

    def set(self, name: str, value: Any, source: str) -> None:
        self[name] = value
        self.sources[name] = source


def env_name(prefix: str, option: str) -> str:
    """``HALLSYNC_AGENT_`` + ``data_dir`` → ``HALLSYNC_AGENT_DATA_DIR``."""
    return prefix + option.replace("-", "_").upper()


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document at ``path``; ConfigError says why it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def coerce(option: Option, value: Any, where: str) -> Any:
    """``value`` (from a TOML file or the environment, described by ``where``) as the option's flag gives it."""
    if option.boolean:
        if isinstance(value, bool):
            result: Any = value
        elif isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            result = value.strip().lower() in TRUE_WORDS
        else:
            raise ConfigError(f"{where}: expected true or false, not {value!r}")
    elif isinstance(value, bool) or isinstance(value, list | dict):
        raise ConfigError(f"{where}: expected {_expected(option)}, not {_show(value)}")
    else:
        text = value if isinstance(value, str) else str(value)   # 900, 2.5, a TOML time: as typed on the line
        try:
            result = option.parse(text) if option.parse is not None else text
        except Exception as exc:  # argparse type functions raise ValueError, TypeError or ArgumentTypeError
            why = str(exc) or type(exc).__name__
            raise ConfigError(f"{where}: bad value {_show(value)} ({why})") from None
    if option.choices is not None and result not in option.choices:
        raise ConfigError(f"{where}: {_show(value)} is not one of {', '.join(map(str, option.choices))}")
    return result


def _expected(option: Option) -> str:
    if option.choices is not None:
        return "one of " + ", ".join(map(str, option.choices))
    parse = option.parse
    if parse in (int, float):
        return "a number"
    return "a string" if parse in (None, str, Path) else "a value"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _table(data: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    table: Any = data
    for part in path:
        table = table.get(part, {}) if isinstance(table, Mapping) else {}
    return table if isinstance(table, Mapping) else {}


def resolve(options: Mapping[str, Option], *, file: str | Path | None = None,
            tables: Iterable[Sequence[str]] = (), env: Mapping[str, str] | None = None,
            env_prefix: str | None = None, flags: Mapping[str, Any] | None = None,
            unknown: str = "ignore") -> Resolved:
    """Merge defaults < ``file`` (top level, then each of ``tables``) < ``env`` < ``flags``.

    ``flags`` are the parsed command line with the options not given left out or None; names there
    that are no option (positional arguments) are passed through. ``unknown="error"`` refuses keys
    of the file that are no option of the command (its top level and its tables); ``"ignore"`` skips
    them (top-level keys shared by sibling commands)."""
    out = Resolved()
    for option in options.values():
        out.set(option.name, option.default, "default")
    if file is not None:
        data = read_toml(file)
        layers: list[tuple[str, Mapping[str, Any]]] = [("", data)]
        layers += [(f"[{'.'.join(path)}] ", _table(data, path)) for path in tables]
        strays: list[str] = []
        for label, table in layers:
            for raw_key, value in table.items():
                key = raw_key.replace("-", "_")
                if label == "" and isinstance(value, dict):
                    continue   # a table: a command's own (read below) or a sibling's
                known = options.get(key)
                if known is None:
                    strays.append(f"{label}{raw_key}")
                    continue
                where = f"config file {file}: {label}{raw_key}"
                out.set(key, coerce(known, value, where), where)
        if strays and unknown == "error":
            raise ConfigError(f"unknown option(s) in config file {file}: {', '.join(strays)}")
    if env is not None and env_prefix:
        for option in options.values():
            if not option.env:
                continue
            name = env_name(env_prefix, option.name)
            text = env.get(name)
            if text:
                where = f"environment variable {name}"
                out.set(option.name, coerce(option, text, where), where)
    for key, value in (flags or {}).items():
        if value is not None:
            out.set(key, value, "--" + key.replace("_", "-"))
    return out


# -- argparse -----------------------------------------------------------------------------------------

def options_from_parser(parser: argparse.ArgumentParser, *, defaults: Mapping[str, Any] | None = None,
                        skip: Iterable[str] = ("help", "config"), no_env: Iterable[str] = ()) -> dict[str, Option]:
    """The options of one (sub)command's parser: each flag's dest, type, choices and kind.

    ``defaults`` gives the defaults when the parser's own are None or SUPPRESS (so that the parsed
    namespace holds only the flags given); without it the parser's defaults are used. A dest
    several ``store_const`` flags share (``--disable``/``--enable``) takes their constants as choices."""
    skipped, quiet = set(skip), set(no_env)
    out: dict[str, Option] = {}
    consts: dict[str, list[Any]] = {}
    for action in parser._actions:  # argparse has no public walk of its actions
        dest = action.dest
        if dest in skipped or dest == argparse.SUPPRESS or not action.option_strings:
            continue
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
            continue
        if defaults is not None:
            default = defaults.get(dest)
        else:
            default = None if action.default is argparse.SUPPRESS else action.default
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse.BooleanOptionalAction):
            out[dest] = Option(dest, default=default, boolean=True, env=dest not in quiet)
        elif isinstance(action, argparse._StoreConstAction):
            consts.setdefault(dest, []).append(action.const)
            out[dest] = Option(dest, default=default, choices=tuple(consts[dest]), env=dest not in quiet)
        else:
            choices = tuple(action.choices) if action.choices is not None else None
            out[dest] = Option(dest, parse=action.type if callable(action.type) else None, default=default,
                               choices=choices, env=dest not in quiet)
    return out


def subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    """The parser of ``prog a b``: ``subparser(parser, "a", "b")``; KeyError for an unknown name."""
    current = parser
    for name in path:
        sub = next(a for a in current._actions if isinstance(a, argparse._SubParsersAction))
        current = sub.choices[name]
    return current


def take_defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Move a parser's flag defaults out of it: returns them and sets each to SUPPRESS.

    The namespace it then parses holds only the flags given, so :func:`resolve` can put the file
    and the environment between the defaults and the flags."""
    out: dict[str, Any] = {}
    for action in parser._actions:
        if action.option_strings and action.dest != argparse.SUPPRESS and action.default is not argparse.SUPPRESS:
            default = action.default
            if isinstance(default, str) and callable(action.type):
                default = action.type(default)   # as argparse itself treats a string default
            out[action.dest] = default
            action.default = argparse.SUPPRESS
    return out


__all__ = ["ConfigError", "Option", "Resolved", "coerce", "env_name", "options_from_parser", "read_toml",
           "resolve", "subparser", "take_defaults"]
