"""prune, stats and remove-namespace: the API, and the command line."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import URL

from tests.support.cli import Cli
from tests.support.sdk import make_token_data
from tokenstore_sql import SchemaOutOfDateError, SQLAlchemyTokenStorage, create_engine
from tokenstore_sql.maintenance import prune, stats

NOW = int(time.time())
PAST = NOW - 100
FUTURE = NOW + 3600


def _fill(url: URL) -> None:
    """alice: one dead row, one refreshable; bob: one live, one dead; carol: one live."""
    rows = {
        "user:alice": {
            "auth": make_token_data("auth", expires_at_seconds=PAST, refresh_token=None),
            "transfer": make_token_data("transfer", expires_at_seconds=PAST),
        },
        "user:bob": {
            "auth": make_token_data("auth", expires_at_seconds=FUTURE, refresh_token=None),
            "transfer": make_token_data("transfer", expires_at_seconds=PAST, refresh_token=None),
        },
        "user:carol": {"auth": make_token_data("auth", expires_at_seconds=FUTURE)},
    }
    for namespace, data in rows.items():
        with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            storage.store_token_data_by_resource_server(data)


def _remaining(url: URL) -> dict[str, list[str]]:
    with SQLAlchemyTokenStorage(url) as storage:
        names = list(storage.iter_namespaces())
        return {
            name: sorted(
                SQLAlchemyTokenStorage(storage.engine, namespace=name)
                .get_token_data_by_resource_server()
                .keys()
            )
            for name in names
        }


def test_prune_removes_only_rows_that_can_never_be_used(empty_database_url: URL) -> None:
    _fill(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        assert prune(engine, dry_run=True, now=NOW) == 2
        assert prune(engine, now=NOW) == 2
        assert prune(engine, now=NOW) == 0
    finally:
        engine.dispose()
    assert _remaining(empty_database_url) == {
        "user:alice": ["transfer"],
        "user:bob": ["auth"],
        "user:carol": ["auth"],
    }


def test_stats_counts_by_namespace_and_resource_server(empty_database_url: URL) -> None:
    _fill(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        found = stats(engine, now=NOW)
    finally:
        engine.dispose()
    by_namespace = {c.name: (c.rows, c.expired, c.unusable) for c in found.by_namespace}
    by_server = {c.name: (c.rows, c.expired, c.unusable) for c in found.by_resource_server}
    assert by_namespace == {"user:alice": (2, 2, 1), "user:bob": (2, 1, 1), "user:carol": (1, 0, 0)}
    assert by_server == {"auth": (3, 1, 1), "transfer": (2, 2, 1)}
    assert (found.total.rows, found.total.expired, found.total.unusable) == (5, 3, 2)


def test_prune_and_stats_refuse_a_database_without_the_schema(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url)
    try:
        with pytest.raises(SchemaOutOfDateError):
            prune(engine)
        with pytest.raises(SchemaOutOfDateError):
            stats(engine)
    finally:
        engine.dispose()


def test_cli_stats_prune_and_remove_namespace(cli: Cli, empty_database_url: URL) -> None:
    _fill(empty_database_url)

    shown = cli("stats", env_url=empty_database_url)
    dry = cli("prune", "--dry-run", env_url=empty_database_url)
    after_dry = _remaining(empty_database_url)
    pruned = cli("prune", env_url=empty_database_url)
    refused = cli("remove-namespace", "user:bob", env_url=empty_database_url)  # no terminal here
    removed = cli("remove-namespace", "user:bob", "--yes", env_url=empty_database_url)
    by_server = cli("stats", "--by", "resource-server", env_url=empty_database_url)

    for result in (shown, dry, pruned, removed, by_server):
        assert result.returncode == 0, result.stderr
        assert "SECRET" not in result.stdout + result.stderr
    assert "user:alice" in shown.stdout
    assert "total: 5 row(s), 3 expired, 2 unusable" in shown.stdout
    assert dry.stdout.startswith("would remove 2 row(s)")
    assert sum(len(v) for v in after_dry.values()) == 5
    assert pruned.stdout.startswith("removed 2 row(s)")
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert removed.stdout.strip() == "removed 1 row(s) from namespace 'user:bob'"
    assert "user:alice" not in by_server.stdout
    assert "total: 2 row(s), 1 expired, 0 unusable" in by_server.stdout
    assert _remaining(empty_database_url) == {"user:alice": ["transfer"], "user:carol": ["auth"]}


def test_cli_maintenance_on_an_empty_database_is_one_line_and_status_1(
    cli: Cli,
    empty_database_url: URL,
) -> None:
    for command in (["stats"], ["prune"], ["remove-namespace", "x", "--yes"]):
        result = cli(*command, env_url=empty_database_url)
        assert result.returncode == 1
        assert result.stderr.startswith("error: ")
        assert len(result.stderr.strip().splitlines()) == 1
