"""The registry of device families: a family is a folder under ``agent/`` named here once.

Each ``agent/<name>/family.py`` defines ``FAMILY`` (a :class:`agent.family.DeviceFamily` subclass,
what ``hall-agent run`` polls) and each ``agent/<name>/diag_cli.py`` defines ``DIAGNOSTICS`` (its
``hall-agent diag`` subcommands, :class:`agent.family.Diagnostic`). The order is the order of the
devices in ``hall-agent devices`` and of the families in the start-up status. Modules are imported
when asked for, so ``hall-agent diag sas`` never loads the Modbus client library.
"""

from __future__ import annotations

import importlib

from .family import DeviceFamily, Diagnostic

FAMILIES: tuple[str, ...] = (
    "sas",      # slot machines on serial lines (agent/sas)
    "modbus",   # cash and betting terminals over Modbus TCP/RTU (agent/modbus)
)


def family_types() -> list[type[DeviceFamily]]:
    """The runtime side of every registered family, in registry order."""
    return [importlib.import_module(f"{__package__}.{name}.family").FAMILY for name in FAMILIES]


def diagnostics() -> dict[str, Diagnostic]:
    """Every family's ``hall-agent diag`` subcommands by name, in registry order."""
    out: dict[str, Diagnostic] = {}
    for name in FAMILIES:
        for diag in importlib.import_module(f"{__package__}.{name}.diag_cli").DIAGNOSTICS:
            out[diag.name] = diag
    return out


__all__ = ["FAMILIES", "diagnostics", "family_types"]
