"""The portal's tests run against SQLite and against a real PostgreSQL server started on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from lab.pulumi_cli import pulumi_binary
from tests.portal import pgserver

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def engine_built() -> None:
    if pulumi_binary() is None:
        pytest.skip("run `make setup` to build the Pulumi toolchain")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    with pgserver.server() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database of each kind (the schema comes from the migrations)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'portal.db'}"
    server = request.getfixturevalue("postgres")
    return pgserver.new_database(server, f"portal_{next(_databases)}")


@pytest.fixture
def fresh_db_url(
    db_url: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Another empty database of the same kind as `db_url`, for a test that needs one of its own."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fresh.db'}"
    return pgserver.new_database(request.getfixturevalue("postgres"), f"fresh_{next(_databases)}")
