"""Modbus register maps of cash/betting terminals, sans-IO: registers in, readings and deltas out.

A map is data (:class:`RegisterMap`), so a second vendor's terminal is a new table, not new code.
The transport (pymodbus TCP or RTU) lives in the agent and the simulator; this package only knows
what the words mean. See :mod:`.registers` for the hallsync terminal map v1 and its word order.
"""

from .registers import (
    HALLSYNC_TERMINAL_V1,
    MAPS,
    STATUS_BITS,
    CounterDelta,
    Field,
    RegisterMap,
    TerminalReading,
    counter_delta,
    decode,
    encode,
)

__all__ = ["HALLSYNC_TERMINAL_V1", "MAPS", "STATUS_BITS", "CounterDelta", "Field", "RegisterMap", "TerminalReading",
           "counter_delta", "decode", "encode"]
