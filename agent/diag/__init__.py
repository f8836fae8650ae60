"""What every ``hall-agent diag`` subcommand shares: exit codes and errors (:mod:`.errors`) and text
rendering (:mod:`.render`). The subcommands themselves live with their device family
(agent.families): ``diag sas`` in :mod:`agent.sas.diag`, ``diag scan`` in :mod:`agent.sas.scan`,
``diag modbus`` in :mod:`agent.modbus.diag`."""
