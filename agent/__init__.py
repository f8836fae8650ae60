"""hall-agent: the daemon on each hall's mini-PC that polls the hall's devices.

Rooms: ``transport`` (bytes on serial lines and ptys), ``sas`` (SAS transactions, the line owner and
one poll coordinator per machine, yielding device facts), ``diag`` and ``cli`` (technician tools).
The agent imports ``protocols`` and never ``central``.
"""
