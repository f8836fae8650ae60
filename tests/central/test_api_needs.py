"""Each API feature receives only the repositories it declares (issue 14): its ``handlers(ctx, store)``
types ``store`` as a ``Needs`` protocol built from :mod:`central.repos`' one-member protocols, so mypy
(in the test command) refuses a feature that reaches a repository it did not name. This test checks
the declarations themselves against the container, and that no feature can reach the store through
the shared context."""

from __future__ import annotations

import dataclasses
import inspect
import typing

from central.api.context import ApiContext
from central.api.features import FEATURES
from central.repos import Repositories

REPOSITORIES = {f.name for f in dataclasses.fields(Repositories)} - {"database"}


def declared(protocol: type) -> set[str]:
    return {name for klass in protocol.__mro__ for name, value in vars(klass).items()
            if isinstance(value, property)}


def test_every_feature_declares_a_subset_of_the_repositories_and_the_context_carries_none() -> None:
    assert "store" not in {f.name for f in dataclasses.fields(ApiContext)}
    seen = {}
    for feature in FEATURES:
        hints = typing.get_type_hints(feature.handlers)
        assert list(inspect.signature(feature.handlers).parameters) == ["ctx", "store"], feature.__name__
        needs = hints["store"]
        if needs is object:  # a feature that reads no repository (who-am-I)
            seen[feature.__name__] = set()
            continue
        names = declared(needs)
        assert names, f"{feature.__name__}.Needs names no repository"
        assert names <= REPOSITORIES, f"{feature.__name__} declares unknown {sorted(names - REPOSITORIES)}"
        assert names != REPOSITORIES, f"{feature.__name__} takes every repository: declare what it uses"
        seen[feature.__name__] = names
    assert seen["central.api.catalog"] == {"audit", "catalog", "devices", "halls"}
    assert seen["central.api.whoami"] == set()
