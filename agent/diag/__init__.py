"""Technician diagnostics: ``hall-agent diag sas`` (link test) and ``hall-agent diag scan``."""
