"""The test suite is a package, so ``tests/central`` is ``tests.central`` and never shadows the ``central`` package."""
