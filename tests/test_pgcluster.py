"""The private PostgreSQL cluster the PostgreSQL backend's tests will run on (issue 14): a real server,
on its own port, writable, gone after."""

from __future__ import annotations

import uuid


def test_the_private_cluster_is_a_real_server_of_our_own(postgres) -> None:
    assert int(postgres.psql("SHOW server_version_num")) >= 150000
    assert postgres.psql("SHOW port") == str(postgres.port)
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name}")
    postgres.psql("CREATE TABLE events (hall text, seq bigint, PRIMARY KEY (hall, seq))", database=name)
    postgres.psql("INSERT INTO events VALUES ('h1', 1), ('h1', 2)", database=name)
    assert postgres.psql("SELECT count(*) FROM events", database=name) == "2"
    assert postgres.psql("SHOW fsync") == "on" and postgres.data.is_dir()
