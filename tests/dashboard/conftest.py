"""The browser and world fixtures of test_dashboard.py, shared with the other dashboard test modules."""

from .test_dashboard import browser, world  # noqa: F401
