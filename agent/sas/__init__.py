"""SAS on the agent side: transactions, the line owner, one coordinator per machine, facts.

Public API::

    line = SasLine(transport, Timing(...))        # one per serial port
    await line.start()
    coord = MachineCoordinator(line, address, device="egm-001", config=PollConfig(), facts=queue)
    await coord.start()
    fact = await coord.facts.get()                # LinkUp, Identity, MetersSnapshot, ExceptionFact, …
    result = await coord.disable_machine()        # CommandResult(acked=True/False)
    await coord.stop(); await line.stop()

:class:`SasPoller` does the wiring for a devices.toml.
"""

from . import facts
from .config import PollConfig
from .coordinator import MachineCoordinator
from .line import SasLine
from .poller import SasDevice, SasPoller, load_devices
from .transaction import PTY_TIMING, Outcome, Timing, TransactionResult, transact

__all__ = [
    "PTY_TIMING", "MachineCoordinator", "Outcome", "PollConfig", "SasDevice", "SasLine", "SasPoller", "Timing",
    "TransactionResult", "facts", "load_devices", "transact",
]
