"""Import of globus-sdk token files and export to JSONTokenStorage, on every backend.

The files are written by globus-sdk's own storage classes (see ``sdk_files.py``).

Imports without keys are refused where the token table holds encrypted tokens, which
other modules' tests leave in the run's shared scratch database; so the tests here (and
in ``tests/cli/test_transfer_cli.py``) use a scratch database of this module's own.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select

from tests.support import transfer
from tests.support.sdk import TokenStorageData, close_storage, make_token_data
from tests.support.sdk_files import (
    JSONTokenStorage,
    token_response,
    write_json,
    write_sqlite,
    write_sqlite_adapter,
)
from tests.support.tracing import sent_statements
from tests.support.transfer import AUTH, CLIENT_SECRET, GROUPS, TRANSFER, snapshot, stored
from tokenstore_sql import (
    Placement,
    SQLAlchemyTokenStorage,
    StoreSettings,
    execution,
    generate_key,
    statements,
)
from tokenstore_sql.backends import backend_of
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.discovery import discover_app_databases, discover_app_files
from tokenstore_sql.errors import EncryptionKeyError, ImportFormatError, TokenFileError
from tokenstore_sql.formats import (
    JSON_V1,
    JSON_V2,
    SQLITE_V1,
    SQLITE_V2,
    read_token_file,
)
from tokenstore_sql.models import DEFAULT_PLACEMENT, tokens_table
from tokenstore_sql.transfer import export_token_file, export_token_stream, import_token_files


def as_dicts(by_resource_server: dict[str, Any]) -> dict[str, Any]:
    """Token dicts from ``OAuthTokenResponse.by_resource_server`` as storage data dicts."""
    return {
        rs: TokenStorageData.from_dict(dict(value)).to_dict(include_extra=True)
        for rs, value in by_resource_server.items()
    }


def counts(report: Any) -> list[tuple[str, str, int, int, int, int]]:
    return [
        (c.source_namespace, c.namespace, c.added, c.updated, c.kept, c.skipped)
        for c in report.counts
    ]


# A scratch database of this module's own (fixtures, by assignment): see support/transfer.py.
module_database = transfer.module_database
database_url = transfer.database_url


@pytest.fixture
def other_namespace(namespace: str) -> str:
    return f"{namespace}-other"


# --- every format, written by the SDK -------------------------------------------------


def test_imports_every_namespace_of_a_json_token_storage_file(
    engine: Engine, tmp_path: Path, namespace: str, other_namespace: str
) -> None:
    first = {TRANSFER: make_token_data(TRANSFER), AUTH: make_token_data(AUTH, refresh_token=None)}
    second = {GROUPS: make_token_data(GROUPS, identity_id=None, token_type=None)}
    path = write_json(tmp_path / "tokens.json", {namespace: first, other_namespace: second})

    report = import_token_files(engine, [path])

    assert read_token_file(path).kind == JSON_V2
    assert stored(engine, namespace) == {rs: d.to_dict() for rs, d in first.items()}
    assert stored(engine, other_namespace) == {GROUPS: second[GROUPS].to_dict()}
    assert sorted(counts(report)) == sorted(
        [(namespace, namespace, 2, 0, 0, 0), (other_namespace, other_namespace, 1, 0, 0, 0)]
    )


def test_imports_a_simple_json_file_adapter_file_into_the_given_namespace(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    from tests.support.sdk_files import SimpleJSONFileAdapter

    response = token_response(AUTH, TRANSFER, GROUPS)
    path = tmp_path / "legacy.json"
    SimpleJSONFileAdapter(path).store(response)

    report = import_token_files(engine, [path], namespace=namespace)

    assert stored(engine, namespace) == as_dicts(response.by_resource_server)
    assert counts(report) == [("DEFAULT", namespace, 3, 0, 0, 0)]
    assert report.counts[0].kind == JSON_V1


def test_a_format_1_0_file_is_the_default_namespace_as_json_token_storage_reads_it(
    tmp_path: Path,
) -> None:
    from tests.support.sdk_files import SimpleJSONFileAdapter

    response = token_response(TRANSFER)
    path = tmp_path / "legacy.json"
    SimpleJSONFileAdapter(path).store(response)
    sdk_view = JSONTokenStorage(path).get_token_data_by_resource_server()

    found = read_token_file(path)

    assert list(found.tokens) == ["DEFAULT"]
    assert {rs: d.to_dict() for rs, d in found.tokens["DEFAULT"].items()} == {
        rs: d.to_dict() for rs, d in sdk_view.items()
    }


def test_imports_every_namespace_of_a_sqlite_token_storage_database(
    engine: Engine, tmp_path: Path, namespace: str, other_namespace: str
) -> None:
    first = {TRANSFER: make_token_data(TRANSFER)}
    second = {AUTH: make_token_data(AUTH), GROUPS: make_token_data(GROUPS, refresh_token=None)}
    path = write_sqlite(tmp_path / "storage.db", {namespace: first, other_namespace: second})

    import_token_files(engine, [path])

    assert read_token_file(path).kind == SQLITE_V2
    assert stored(engine, namespace) == {TRANSFER: first[TRANSFER].to_dict()}
    assert stored(engine, other_namespace) == {rs: d.to_dict() for rs, d in second.items()}


@pytest.fixture
def cli_database(tmp_path: Path, namespace: str) -> tuple[Path, Any, str]:
    """A globus-cli style SQLiteAdapter database, with a client secret in its config."""
    response = token_response(AUTH, TRANSFER)
    identity = "a9f1c2d3-0000-4000-8000-00000000abcd"
    config = {
        namespace: {
            "auth_client_data": {"client_id": "cid", "client_secret": CLIENT_SECRET},
            "auth_user_data": {"sub": identity},
            "scope_contract_versions": {AUTH: 1},
        }
    }
    path = write_sqlite_adapter(tmp_path / "storage.db", {namespace: response}, config)
    return path, response, identity


def test_imports_a_sqlite_adapter_database_and_skips_its_config(
    engine: Engine, cli_database: tuple[Path, Any, str], namespace: str
) -> None:
    path, response, _ = cli_database

    report = import_token_files(engine, [path])

    assert report.files[0].kind == SQLITE_V1
    assert report.files[0].config_entries == 3
    assert stored(engine, namespace) == as_dicts(response.by_resource_server)
    assert all(row[2] is None for row in snapshot(engine) if row[0] == namespace)
    assert CLIENT_SECRET not in repr(report)


def test_identity_from_config_fills_the_identity_of_schema_1_tokens(
    engine: Engine, cli_database: tuple[Path, Any, str], namespace: str
) -> None:
    path, response, identity = cli_database

    import_token_files(engine, [path], identity_from_config=True)

    got = stored(engine, namespace)
    assert {data["identity_id"] for data in got.values()} == {identity}
    assert set(got) == set(response.by_resource_server)


# --- namespaces, conflicts, idempotence ----------------------------------------------


def test_namespace_maps_all_of_a_files_namespaces_into_one(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    path = write_json(
        tmp_path / "t.json",
        {"alice": {TRANSFER: make_token_data(TRANSFER)}, "bob": {AUTH: make_token_data(AUTH)}},
    )

    report = import_token_files(engine, [path], namespace=namespace)

    assert set(stored(engine, namespace)) == {TRANSFER, AUTH}
    assert sorted(counts(report)) == [
        ("alice", namespace, 1, 0, 0, 0),
        ("bob", namespace, 1, 0, 0, 0),
    ]


def test_mapping_two_namespaces_with_one_resource_server_together_is_refused(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    path = write_json(
        tmp_path / "t.json",
        {"alice": {TRANSFER: make_token_data(TRANSFER)}, "bob": {TRANSFER: make_token_data()}},
    )
    before = snapshot(engine)

    with pytest.raises(ImportFormatError, match="'alice' and 'bob' both hold"):
        import_token_files(engine, [path], namespace=namespace)

    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("policy", "file_is_newer", "expected_from", "expected_counts"),
    [
        ("newer", True, "file", (0, 1, 0, 0)),
        ("newer", False, "database", (0, 0, 0, 1)),
        ("skip", True, "database", (0, 0, 0, 1)),
        ("overwrite", False, "file", (0, 1, 0, 0)),
    ],
)
def test_conflicts_follow_the_policy(
    engine: Engine,
    tmp_path: Path,
    namespace: str,
    policy: str,
    file_is_newer: bool,
    expected_from: str,
    expected_counts: tuple[int, int, int, int],
) -> None:
    in_database = make_token_data(TRANSFER, expires_at_seconds=2_000_000_000)
    in_file = make_token_data(
        TRANSFER,
        access_token="from-file",
        expires_at_seconds=2_000_000_000 + (100 if file_is_newer else -100),
    )
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: in_database})
    path = write_json(tmp_path / "t.json", {namespace: {TRANSFER: in_file}})

    report = import_token_files(engine, [path], on_conflict=policy)

    expected = in_file if expected_from == "file" else in_database
    assert stored(engine, namespace) == {TRANSFER: expected.to_dict()}
    assert counts(report) == [(namespace, namespace, *expected_counts)]


def test_later_files_meet_earlier_ones_by_the_same_policy(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    old = make_token_data(TRANSFER, access_token="old", expires_at_seconds=1_900_000_000)
    new = make_token_data(TRANSFER, access_token="new", expires_at_seconds=1_900_000_500)
    first = write_json(tmp_path / "a.json", {"x": {TRANSFER: new}})
    second = write_json(tmp_path / "b.json", {"y": {TRANSFER: old}})

    report = import_token_files(engine, [first, second], namespace=namespace, merge=True)

    assert stored(engine, namespace)[TRANSFER]["access_token"] == "new"
    assert counts(report) == [("x", namespace, 1, 0, 0, 0), ("y", namespace, 0, 0, 0, 1)]


def test_two_files_that_supply_one_key_are_refused_naming_both_and_the_key(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    first = write_json(tmp_path / "a.json", {namespace: {TRANSFER: make_token_data(TRANSFER)}})
    copy = write_json(tmp_path / "b.json", {namespace: {TRANSFER: make_token_data(TRANSFER)}})
    before = snapshot(engine)

    with pytest.raises(ImportFormatError) as refused:
        import_token_files(engine, [first, copy])

    message = str(refused.value)
    assert str(first) in message
    assert str(copy) in message
    assert repr(namespace) in message
    assert repr(TRANSFER) in message
    assert "--merge" in message
    assert snapshot(engine) == before


def test_files_of_two_identities_never_share_a_namespace_even_when_merging(
    engine: Engine, tmp_path: Path
) -> None:
    # Two JSONTokenStorage files, both in DEFAULT, of two users, for different resource
    # servers: nothing collides by key, yet DEFAULT would hold two users' tokens.
    alice = write_json(
        tmp_path / "alice.json", {"DEFAULT": {AUTH: make_token_data(AUTH, identity_id="alice")}}
    )
    bob = write_json(
        tmp_path / "bob.json", {"DEFAULT": {TRANSFER: make_token_data(TRANSFER, identity_id="bob")}}
    )

    before = snapshot(engine)
    for merge in (False, True):
        with pytest.raises(ImportFormatError, match="another identity"):
            import_token_files(engine, [alice, bob], merge=merge)
    assert snapshot(engine) == before


def test_a_file_of_another_identity_is_refused_for_a_namespace_the_database_holds(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server(
            {AUTH: make_token_data(AUTH, identity_id="alice")}
        )
    before = snapshot(engine)
    bob = write_json(
        tmp_path / "bob.json", {namespace: {TRANSFER: make_token_data(TRANSFER, identity_id="bob")}}
    )

    with pytest.raises(ImportFormatError, match="another identity"):
        import_token_files(engine, [bob])
    assert snapshot(engine) == before


@pytest.mark.parametrize("rows_per_upsert", [None, 7], ids=["backend's", "7 rows"])
def test_a_large_import_writes_every_row_exactly_in_statements_of_many_rows(
    engine: Engine,
    tmp_path: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    rows_per_upsert: int | None,
) -> None:
    backend = backend_of(engine.dialect)
    if rows_per_upsert is not None:  # the many-row statement on every database
        backend = dataclasses.replace(backend, rows_per_upsert=rows_per_upsert)
        for module in (execution, statements):  # where the chunks and statements are made
            monkeypatch.setattr(module, "backend_of", lambda dialect: backend)
    count = 2 * backend.rows_per_upsert + 3  # whole statements, and some rows one by one

    def tokens(version: int) -> dict[str, dict[str, TokenStorageData]]:
        return {
            f"{namespace}-{i:03}": {
                GROUPS: make_token_data(
                    GROUPS,
                    access_token=f"access-{i}-{version}-SECRET",
                    refresh_token=None if i % 3 else f"refresh-{i}-SECRET",
                    identity_id=f"identity-{i}",
                    expires_at_seconds=1_900_000_000 + 1000 * version + i,
                    extra={"i": i, "v": version} if i % 2 else {},
                )
            }
            for i in range(count)
        }

    first, newer = tokens(1), tokens(2)
    with sent_statements(engine) as sent:
        added = import_token_files(engine, [write_json(tmp_path / "first.json", first)])
    updated = import_token_files(engine, [write_json(tmp_path / "newer.json", newer)])

    if backend.rows_per_upsert > 1:  # two statements' worth of rows each, then the rest
        upserts = [s for s in sent if s.sql.startswith("INSERT INTO tokenstore_sql_tokens")]
        assert 0 < len(upserts) <= 3
    assert sum(c.added for c in added.counts) == count
    assert sum(c.updated for c in updated.counts) == count
    for name, by_resource_server in newer.items():
        assert stored(engine, name) == {GROUPS: by_resource_server[GROUPS].to_dict()}
    with engine.connect() as connection:
        table = tokens_table(DEFAULT_PLACEMENT)
        stamps = connection.execute(
            select(table.c.created_at, table.c.updated_at).where(
                table.c.namespace.startswith(f"{namespace}-")
            )
        ).all()
    assert len(stamps) == count
    assert len({created for created, _ in stamps}) == 1  # each import stamps its rows once
    assert len({updated_at for _, updated_at in stamps}) == 1
    assert stamps[0][1] > stamps[0][0]  # kept its first created_at, updated later


def test_importing_twice_changes_nothing_the_second_time(
    engine: Engine, tmp_path: Path, namespace: str, cli_database: tuple[Path, Any, str]
) -> None:
    json_path = write_json(
        tmp_path / "t.json", {namespace: {GROUPS: make_token_data(GROUPS, extra={"k": [1]})}}
    )
    paths = [json_path, cli_database[0]]
    import_token_files(engine, paths)
    before = snapshot(engine)

    report = import_token_files(engine, paths)

    assert snapshot(engine) == before
    assert [(c.added, c.updated, c.skipped) for c in report.counts] == [(0, 0, 0)] * 2
    assert [c.kept for c in report.counts] == [1, 2]


def test_dry_run_reports_the_same_and_writes_nothing(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})
    path = write_json(
        tmp_path / "t.json",
        {namespace: {TRANSFER: make_token_data(TRANSFER), AUTH: make_token_data(AUTH, scope="x")}},
    )
    before = snapshot(engine)

    dry = import_token_files(engine, [path], dry_run=True, on_conflict="overwrite")
    assert snapshot(engine) == before
    real = import_token_files(engine, [path], on_conflict="overwrite")

    assert dry.dry_run
    assert not real.dry_run
    assert counts(dry) == counts(real) == [(namespace, namespace, 1, 1, 0, 0)]


def test_dry_run_on_an_empty_database_creates_no_schema(
    empty_engine: Engine, tmp_path: Path
) -> None:
    path = write_json(tmp_path / "t.json", {"DEFAULT": {TRANSFER: make_token_data()}})
    report = import_token_files(empty_engine, [path], dry_run=True)
    assert counts(report) == [("DEFAULT", "DEFAULT", 1, 0, 0, 0)]
    assert inspect(empty_engine).get_table_names() == []


def test_import_into_an_encrypted_database_seals_tokens_and_stays_idempotent(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    keys = KeyRing([generate_key()])
    data = make_token_data(TRANSFER)
    path = write_json(tmp_path / "t.json", {namespace: {TRANSFER: data}})

    import_token_files(engine, [path], StoreSettings(keys=keys))
    before = snapshot(engine)
    again = import_token_files(engine, [path], StoreSettings(keys=keys))

    assert stored(engine, namespace, keys) == {TRANSFER: data.to_dict()}
    row = next(r for r in before if r[0] == namespace)
    assert data.access_token not in row
    assert snapshot(engine) == before
    assert counts(again) == [(namespace, namespace, 0, 0, 1, 0)]


def _key_ids(engine: Engine, placement: Placement = DEFAULT_PLACEMENT) -> dict[str, str | None]:
    """Each stored row's namespace and token_key_id (None: stored in clear)."""
    table = tokens_table(placement)
    with engine.connect() as connection:
        found = connection.execute(select(table.c.namespace, table.c.token_key_id)).all()
    return {namespace: key_id for namespace, key_id in found}


def test_import_without_keys_is_refused_where_the_table_holds_encrypted_tokens(
    empty_engine: Engine, tmp_path: Path, namespace: str
) -> None:
    keys = KeyRing([generate_key()])
    token = make_token_data(TRANSFER)
    path = write_json(tmp_path / "t.json", {namespace: {TRANSFER: token}})
    with SQLAlchemyTokenStorage(empty_engine, namespace="sealed", keys=keys) as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})
    before = snapshot(empty_engine)

    for dry_run in (True, False):
        with pytest.raises(EncryptionKeyError) as refused:
            import_token_files(empty_engine, [path], dry_run=dry_run)
        assert str(refused.value) == (
            "the token table holds encrypted tokens, but no encryption keys were given; "
            "pass the keys (--keys, keys=), or --plaintext "
            "(allow_plaintext=True) to store these tokens in clear text anyway"
        )
    assert snapshot(empty_engine) == before

    report = import_token_files(empty_engine, [path], allow_plaintext=True)
    assert counts(report) == [(namespace, namespace, 1, 0, 0, 0)]
    assert _key_ids(empty_engine) == {"sealed": keys.primary_key_id, namespace: None}
    assert stored(empty_engine, namespace) == {TRANSFER: token.to_dict()}


def test_import_without_keys_into_a_table_of_clear_tokens_needs_no_flag(
    empty_engine: Engine, tmp_path: Path, namespace: str
) -> None:
    keys = KeyRing([generate_key()])
    elsewhere = Placement("elsewhere_")  # encrypted tokens in another table do not count
    path = write_json(tmp_path / "t.json", {namespace: {TRANSFER: make_token_data(TRANSFER)}})
    with SQLAlchemyTokenStorage(empty_engine, namespace="clear") as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})
    with SQLAlchemyTokenStorage(
        empty_engine, namespace="sealed", keys=keys, placement=elsewhere
    ) as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})

    report = import_token_files(empty_engine, [path])

    assert counts(report) == [(namespace, namespace, 1, 0, 0, 0)]
    assert _key_ids(empty_engine) == {"clear": None, namespace: None}
    assert _key_ids(empty_engine, elsewhere) == {"sealed": keys.primary_key_id}


# --- failures leave the database as it was -------------------------------------------


def _corrupt_files(tmp_path: Path, good: Path) -> Iterator[tuple[str, Path, str]]:
    text = good.read_text()
    yield "truncated json", _write(tmp_path / "cut.json", text[: len(text) // 2]), "not valid JSON"
    yield "empty", _write(tmp_path / "empty.json", ""), "is empty"
    deep = "[" * 5000 + "]" * 5000
    yield "nested 5,000 deep", _write(tmp_path / "deep.json", deep), "nested too deeply"
    yield "binary", _write(tmp_path / "bin.json", b"\xff\xfe\x00garbage"), "neither JSON"
    doc = json.loads(text)
    yield (
        "unknown version",
        _write(tmp_path / "v9.json", json.dumps({**doc, "format_version": "9.0"})),
        "unknown format_version '9.0'",
    )
    yield "not a token file", _write(tmp_path / "pkg.json", '{"name": "x"}'), "not a globus-sdk"
    bad_field = json.loads(text)
    ns = next(iter(bad_field["data"]))
    rs = next(iter(bad_field["data"][ns]))
    bad_field["data"][ns][rs]["expires_at_seconds"] = "soon"
    yield "bad field", _write(tmp_path / "f.json", json.dumps(bad_field)), "expires_at_seconds"
    yield "missing", tmp_path / "missing.json", "cannot be read"
    yield "directory", tmp_path, "cannot be read"


def _corrupt_sqlite(tmp_path: Path, namespace: str) -> Iterator[tuple[str, Path, str]]:
    full = write_sqlite(tmp_path / "full.db", {namespace: {TRANSFER: make_token_data()}})
    content = full.read_bytes()
    yield "truncated sqlite", _write(tmp_path / "cut.db", content[:200]), "SQLite database"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (x)")
    yield "foreign sqlite", other, "not a globus-sdk token database"
    future = _write(tmp_path / "future.db", content)
    with sqlite3.connect(future) as connection:
        connection.execute(
            "UPDATE sdk_storage_adapter_internal SET value = '3' "
            "WHERE attribute = 'globus-sdk.database_schema_version'"
        )
    yield "unknown schema", future, "unknown database_schema_version '3'"
    broken = _write(tmp_path / "broken.db", content)
    with sqlite3.connect(broken) as connection:
        connection.execute("UPDATE token_storage SET token_data_json = '{not json'")
    yield "bad row", broken, "is not valid JSON"


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_every_broken_file_fails_the_whole_import_naming_the_file(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    good = write_json(tmp_path / "good.json", {namespace: {TRANSFER: make_token_data()}})
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})
    before = snapshot(engine)
    cases = [*_corrupt_files(tmp_path, good), *_corrupt_sqlite(tmp_path, namespace)]

    for case, bad, problem in cases:
        with pytest.raises(ImportFormatError) as caught:
            import_token_files(engine, [good, bad])
        message = str(caught.value)
        assert message.startswith(f"{bad}: "), case
        assert problem in message, (case, message)
        assert "SECRET" not in message, case
        assert "access-" not in message, case
        assert snapshot(engine) == before, case
    assert len(cases) == 13


# --- export --------------------------------------------------------------------------


def test_export_writes_a_private_file_that_json_token_storage_reads(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    data = make_token_data(TRANSFER, extra={"note": "kept", "n": [1, {"a": None}]})
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: data})
    target = tmp_path / "out.json"

    written = export_token_file(engine, target, namespaces=[namespace])

    assert written == {namespace: 1}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    got = JSONTokenStorage(target, namespace=namespace).get_token_data(TRANSFER)
    assert got is not None
    assert got.to_dict(include_extra=True) == data.to_dict(include_extra=True)


def test_export_to_a_stream_writes_the_same_document_and_refuses_before_writing(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    data = make_token_data(TRANSFER, extra={"note": "kept"})
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: data})
    target = tmp_path / "out.json"
    export_token_file(engine, target, namespaces=[namespace])
    stream = io.StringIO()

    written = export_token_stream(engine, stream, namespaces=[namespace])

    assert written == {namespace: 1}
    assert json.loads(stream.getvalue()) == json.loads(target.read_text())
    assert stream.getvalue().endswith("}\n")
    refused = io.StringIO()
    with pytest.raises(TokenFileError, match=r"^<stream>: not written: no token data"):
        export_token_stream(engine, refused, namespaces=[namespace, f"{namespace}-none"])
    assert refused.getvalue() == ""


def test_export_refuses_an_existing_file_unless_told(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
    target = _write(tmp_path / "out.json", "keep me")
    target.chmod(0o644)

    with pytest.raises(TokenFileError, match=r"already exists.*--force"):
        export_token_file(engine, target, namespaces=[namespace])
    assert target.read_text() == "keep me"

    export_token_file(engine, target, namespaces=[namespace], overwrite=True)
    assert json.loads(target.read_text())["format_version"] == "2.0"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@pytest.mark.parametrize("case", ["missing directory", "not a directory", "disk full"])
def test_an_export_that_cannot_be_written_fails_naming_the_path_and_leaves_no_file(
    engine: Engine,
    tmp_path: Path,
    namespace: str,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
    folder = tmp_path / "exports"
    folder.mkdir()
    if case == "missing directory":
        target, reason = folder / "nowhere" / "out.json", "No such file or directory"
    elif case == "not a directory":
        _write(folder / "a-file", "x")
        target, reason = folder / "a-file" / "out.json", "Not a directory"
    else:
        target, reason = folder / "out.json", "No space left on device"

        def full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)

    with pytest.raises(TokenFileError) as refused:
        export_token_file(engine, target, namespaces=[namespace])

    assert str(refused.value) == f"{target}: cannot be written: {reason}"
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers == ([] if case != "not a directory" else ["a-file"])
    # a rerun is not refused as "already exists"
    monkeypatch.undo()
    if case == "disk full":
        export_token_file(engine, target, namespaces=[namespace])
        assert json.loads(target.read_text())["format_version"] == "2.0"


def test_an_export_of_a_namespace_that_holds_nothing_writes_nothing_and_says_so(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
    target = tmp_path / "out.json"

    with pytest.raises(TokenFileError, match=r"no token data in namespace.*'nosuch'"):
        export_token_file(engine, target, namespaces=[namespace, "nosuch"])
    assert not target.exists()


def test_export_refuses_extra_that_would_shadow_a_field(
    engine: Engine, tmp_path: Path, namespace: str
) -> None:
    with SQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
        storage.store_token_data_by_resource_server(
            {TRANSFER: make_token_data(TRANSFER, extra={"scope": "shadow"})}
        )

    with pytest.raises(TokenFileError, match="'scope'"):
        export_token_file(engine, tmp_path / "out.json", namespaces=[namespace])
    assert not (tmp_path / "out.json").exists()


def test_import_export_import_is_lossless_with_extra(
    backend: str, empty_engine: Engine, tmp_path: Path, cli_database: tuple[Path, Any, str]
) -> None:
    sources = [
        write_json(
            tmp_path / "a.json",
            {
                "alice": {TRANSFER: make_token_data(TRANSFER), AUTH: make_token_data(AUTH)},
                "bob": {GROUPS: make_token_data(GROUPS, identity_id=None, refresh_token=None)},
            },
        ),
        write_sqlite(tmp_path / "b.db", {"carol": {TRANSFER: make_token_data(token_type=None)}}),
        cli_database[0],
    ]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    import_token_files(empty_engine, sources)
    with SQLAlchemyTokenStorage(empty_engine, namespace="alice") as storage:
        extra = {"policy": {"nested": [1, 2.5, None, True, "ü"]}, "extra": "named extra"}
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH, extra=extra)})
    export_token_file(empty_engine, first)
    before = snapshot(empty_engine)
    with SQLAlchemyTokenStorage(empty_engine) as storage:
        for name in list(storage.iter_namespaces()):
            SQLAlchemyTokenStorage(empty_engine, namespace=name).remove_namespace()
    import_token_files(empty_engine, [first])
    export_token_file(empty_engine, second)
    after = snapshot(empty_engine)

    def data_only(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [row[:9] for row in rows]  # every column up to extra; not the timestamps

    assert json.loads(first.read_text()) == json.loads(second.read_text())
    assert data_only(after) == data_only(before)
    assert len(after) == 6
    alice = json.loads(first.read_text())["data"]["alice"][AUTH]
    assert alice["policy"] == {"nested": [1, 2.5, None, True, "ü"]}
    assert JSONTokenStorage(first, namespace="alice").get_token_data(AUTH).extra == extra  # type: ignore[union-attr]


# --- discovery ------------------------------------------------------------------------


def test_discovery_finds_the_files_globus_app_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import globus_sdk

    from tests.support.sdk_files import SQLiteTokenStorage

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    config = globus_sdk.GlobusAppConfig()
    made = [
        JSONTokenStorage.for_globus_app("c1", "My App", config, "DEFAULT"),
        SQLiteTokenStorage.for_globus_app("c2", "other", config, "DEFAULT"),
    ]
    for storage in made:
        storage.store_token_data_by_resource_server({TRANSFER: make_token_data()})
        close_storage(storage)
    (tmp_path / ".globus" / "app" / "c1" / "my-app" / "notes.txt").write_text("x")

    found = discover_app_files(tmp_path)

    assert found == sorted(Path(s.filepath) for s in made)  # type: ignore[attr-defined]
    assert discover_app_files() == found


def test_discovery_lists_our_own_globus_app_databases_apart_from_the_files_to_import(
    home: Path,
) -> None:
    import globus_sdk

    tmp_path = home
    for environment in ("production", "sandbox"):
        config = globus_sdk.GlobusAppConfig(environment=environment)
        with SQLAlchemyTokenStorage.for_globus_app("c3", "ours", config, "DEFAULT") as storage:
            storage.store_token_data_by_resource_server({TRANSFER: make_token_data()})
    app_dir = tmp_path / ".globus" / "app" / "c3" / "ours"
    ours = [app_dir / "sandbox-tokens.tokenstore.db", app_dir / "tokens.tokenstore.db"]
    importable = write_json(app_dir / "tokens.json", {"DEFAULT": {TRANSFER: make_token_data()}})

    assert discover_app_databases(tmp_path) == ours
    assert discover_app_databases() == ours
    assert discover_app_files(tmp_path) == [importable]
