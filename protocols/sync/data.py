"""Rules for the free-form JSON objects (event ``data``, command ``params``) and for money in them.

msgspec decodes these as ``dict[str, Any]``, which would let floats through, so they are walked
here. Floats are refused everywhere: money is integer minor units, and floats would also make the
canonical encoding (and so the hash) depend on each language's float printing. This runs once per
event on both ends, so the flat case (scalar values, known keys) is one tight loop.
"""

from __future__ import annotations

import re
from typing import Any, Final, cast

from .errors import Malformed
from .fields import INT64_MAX, INT64_MIN, is_ident

MAX_DEPTH: Final = 16
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}\Z")

_SCALARS: Final = frozenset({str, bool, type(None)})


def check_object(obj: object, path: str = "data", depth: int = 0) -> bool:
    """Raise :class:`Malformed` unless ``obj`` is a JSON object of the allowed shape.

    Keys match ``[A-Za-z0-9_.:-]{1,64}``; values are str, int (signed 64-bit), bool, null, lists
    and objects of the same, nested at most ``MAX_DEPTH`` deep. Returns whether a top-level key
    looks like an amount (``amount`` or ``*_amount``), so the money check can skip a second pass.
    """
    if type(obj) is not dict:
        raise Malformed(f"{path}: expected an object, got {type(obj).__name__}")
    if depth > MAX_DEPTH:
        raise Malformed(f"{path}: nested deeper than {MAX_DEPTH}")
    has_amounts = False
    known = is_ident.seen
    for key, value in obj.items():
        if key not in known and not is_ident(key):
            raise Malformed(f"{path}: key {key!r} outside [A-Za-z0-9_.:-]{{1,64}}")
        if key.endswith("amount"):
            has_amounts = True
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise Malformed(f"{path}.{key}: integer outside signed 64-bit range")
            continue
        _check_nested(value, f"{path}.{key}", depth)
    return has_amounts


def _check_nested(value: object, path: str, depth: int) -> None:
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is int:
        if not INT64_MIN <= cast(int, value) <= INT64_MAX:
            raise Malformed(f"{path}: integer outside signed 64-bit range")
        return
    if kind is dict:
        check_object(value, path, depth + 1)
        return
    if kind is list:
        if depth >= MAX_DEPTH:
            raise Malformed(f"{path}: nested deeper than {MAX_DEPTH}")
        for index, item in enumerate(cast("list[object]", value)):
            _check_nested(item, f"{path}[{index}]", depth + 1)
        return
    if kind is float:
        raise Malformed(f"{path}: floats are forbidden (amounts are integer minor units)")
    raise Malformed(f"{path}: {kind.__name__} is not a JSON value of this protocol")


def check_amounts(data: dict[str, Any], has_amounts: bool = True) -> None:
    """The money rules of a free-form object, whatever its event type (the types' own rules, such as
    which keys a money type requires, are :mod:`.vocabulary`'s):

    * a top-level key ``amount`` or ending in ``_amount`` must be an int ≥ 0 (minor units);
    * if ``amount`` is present, ``currency`` must be three upper-case letters (ISO 4217).
    """
    if has_amounts:
        for key, value in data.items():
            if (key == "amount" or key.endswith("_amount")) and (type(value) is not int or value < 0):
                raise Malformed(f"data.{key}: amounts must be integers ≥ 0 in minor units, got {value!r}")
    if "amount" in data:
        currency = data.get("currency")
        if type(currency) is not str or _CURRENCY_RE.match(currency) is None:
            raise Malformed(f"data.currency must be an ISO 4217 code like 'EUR', got {currency!r}")
