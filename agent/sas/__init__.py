"""SAS on the agent side: transactions, the line owner, one coordinator per machine, facts.

Public API::

    line = SasLine(transport, Timing(...))        # one per serial port
    await line.start()
    coord = MachineCoordinator(line, address, device="egm-001", config=PollConfig(), facts=queue)
    await coord.start()
    fact = await coord.facts.get()                # LinkUp, Identity, MetersSnapshot, ExceptionFact, …
    result = await coord.disable_machine()        # CommandResult(acked=True/False)
    await coord.stop(); await line.stop()

:class:`SasPoller` does the wiring for a devices.toml; :mod:`.family` is what the runtime holds
(:class:`~agent.sas.family.SasFamily`, agent.family), :mod:`.diag_cli` the ``hall-agent diag sas`` and
``scan`` subcommands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import facts
    from .config import PollConfig
    from .coordinator import MachineCoordinator
    from .line import SasLine
    from .poller import SasDevice, SasPoller, load_devices
    from .transaction import PTY_TIMING, Outcome, Timing, TransactionResult, transact

_HOMES = {
    "PollConfig": "config", "MachineCoordinator": "coordinator", "SasLine": "line", "SasDevice": "poller",
    "SasPoller": "poller", "load_devices": "poller", "PTY_TIMING": "transaction", "Outcome": "transaction",
    "Timing": "transaction", "TransactionResult": "transaction", "transact": "transaction",
}


def __getattr__(name: str) -> Any:
    """Imported on first use, so the CLI lists this family's diag subcommands (:mod:`.diag_cli`)
    without loading the poller."""
    if name == "facts":
        return importlib.import_module(f"{__name__}.facts")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "PTY_TIMING", "MachineCoordinator", "Outcome", "PollConfig", "SasDevice", "SasLine", "SasPoller", "Timing",
    "TransactionResult", "facts", "load_devices", "transact",
]
