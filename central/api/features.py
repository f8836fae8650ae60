"""The API's feature modules, in the order their routes are mounted (see :mod:`.context`)."""

from __future__ import annotations

from types import ModuleType
from typing import Final

from . import alerts, audit, catalog, export, floor, hall_settings, provider_reports, reconciliation, rules, whoami

FEATURES: Final[tuple[ModuleType, ...]] = (catalog, rules, provider_reports, alerts, reconciliation, audit,
                                            export, floor, hall_settings, whoami)
