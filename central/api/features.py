"""The API's feature modules, in the order their routes are mounted (see :mod:`.context`)."""

from __future__ import annotations

from types import ModuleType
from typing import Final

FEATURES: Final[tuple[ModuleType, ...]] = ()
