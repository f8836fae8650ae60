"""Honest simulated gaming devices: EGMs that speak SAS on ptys, with players, meters and faults.

Layers: ``games``/``meters``/``fifo`` (parts) → ``egm`` (the machine) → ``players`` (who plays it)
→ ``responder`` (SAS, sans-IO) → ``pty_egm`` (a pty) → ``floor``/``cli`` (many machines).
Terminals: ``terminal`` (the model) → ``customers`` (who uses it) → ``modbus_server`` (pymodbus, TCP or
RTU on a pty).
Imports only ``protocols``.
"""
