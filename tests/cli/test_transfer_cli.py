"""``tokenstore-sql import``, ``export`` and ``discover`` from the command line.

Like ``tests/backends/test_transfer.py``, on a scratch database of this module's own.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine

from tests.support import transfer
from tests.support.cli import Cli
from tests.support.sdk import make_token_data
from tests.support.sdk_files import (
    JSONTokenStorage,
    token_response,
    write_json,
    write_sqlite_adapter,
)
from tests.support.transfer import AUTH, CLIENT_SECRET, TRANSFER, snapshot, stored
from tokenstore_sql import SQLAlchemyTokenStorage, create_engine, generate_key
from tokenstore_sql.cli.transfer_commands import PROGRESS_BAR_FILES

# A scratch database of this module's own (fixtures, by assignment): see support/transfer.py.
module_database = transfer.module_database
database_url = transfer.database_url


def test_import_prints_one_line_per_file_and_namespace_and_hides_config(
    cli: Cli, database_url: URL, engine: Engine, tmp_path: Path, namespace: str
) -> None:
    config = {namespace: {"auth_client_data": {"client_secret": CLIENT_SECRET}}}
    response = token_response("auth.globus.org", TRANSFER)
    cli_db = write_sqlite_adapter(tmp_path / "storage.db", {namespace: response}, config)
    other = write_json(tmp_path / "t.json", {"DEFAULT": {TRANSFER: make_token_data()}})

    result = cli(
        "import", str(cli_db), str(other), "--namespace", namespace, "--merge", env_url=database_url
    )

    assert result.returncode == 0, result.output
    assert result.stdout.splitlines() == [
        f"{cli_db}: SQLiteAdapter (schema 1), namespace {namespace!r}: "
        "2 added, 0 updated, 0 kept, 0 skipped",
        f"{other}: JSONTokenStorage 2.0, namespace 'DEFAULT' -> {namespace!r}: "
        "0 added, 0 updated, 0 kept, 1 skipped",
        f"{cli_db}: 1 config_storage entry(ies) skipped (application settings, not token data)",
        "wrote 2 token(s) from 2 file(s)",
    ]
    assert CLIENT_SECRET not in result.output
    assert set(stored(engine, namespace)) == {"auth.globus.org", TRANSFER}


def test_dry_run_prints_what_it_would_do_and_writes_nothing(
    cli: Cli, database_url: URL, engine: Engine, tmp_path: Path, namespace: str
) -> None:
    path = write_json(tmp_path / "t.json", {namespace: {TRANSFER: make_token_data()}})
    before = snapshot(engine)

    result = cli("import", "--dry-run", str(path), env_url=database_url)

    assert result.returncode == 0, result.output
    assert result.stdout.splitlines() == [
        f"dry run: {path}: JSONTokenStorage 2.0, namespace {namespace!r}: "
        "1 added, 0 updated, 0 kept, 0 skipped",
        "dry run: would write 1 token(s) from 1 file(s)",
    ]
    assert snapshot(engine) == before


def test_a_broken_file_exits_non_zero_naming_it_and_imports_nothing(
    cli: Cli, database_url: URL, engine: Engine, tmp_path: Path, namespace: str
) -> None:
    good = write_json(tmp_path / "good.json", {namespace: {TRANSFER: make_token_data()}})
    bad = tmp_path / "bad.json"
    bad.write_text(good.read_text()[:-20])
    before = snapshot(engine)

    result = cli("import", str(good), str(bad), env_url=database_url)

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad}: is not valid JSON")
    assert result.stdout == ""
    assert snapshot(engine) == before


def test_many_files_show_a_progress_bar_on_stderr_only(
    cli: Cli, database_url: URL, tmp_path: Path, namespace: str
) -> None:
    paths = [
        str(write_json(tmp_path / f"{i}.json", {namespace: {f"rs{i}": make_token_data(f"rs{i}")}}))
        for i in range(PROGRESS_BAR_FILES + 1)
    ]

    few = cli("import", "--dry-run", *paths[:PROGRESS_BAR_FILES], env_url=database_url)
    many = cli("import", *paths, env_url=database_url)

    assert many.returncode == 0, many.output
    assert "reading token files" in many.stderr
    assert "reading token files" not in many.stdout
    assert "reading token files" not in few.stderr
    assert many.stdout.splitlines()[-1] == f"wrote {len(paths)} token(s) from {len(paths)} file(s)"


def test_export_writes_a_private_json_token_storage_file(
    cli: Cli, database_url: URL, engine: Engine, tmp_path: Path, namespace: str
) -> None:
    data = make_token_data(extra={"k": "v"})
    path = write_json(tmp_path / "in.json", {namespace: {TRANSFER: data}})
    assert cli("import", str(path), env_url=database_url).returncode == 0
    target = tmp_path / "out.json"

    result = cli("export", str(target), "--namespace", namespace, env_url=database_url)
    again = cli("export", str(target), "--namespace", namespace, env_url=database_url)

    assert result.returncode == 0, result.output
    assert result.stdout.splitlines() == [
        f"{target}: namespace {namespace!r}: 1 token(s)",
        f"wrote 1 token(s) in 1 namespace(s) to {target}",
    ]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    got = JSONTokenStorage(target, namespace=namespace).get_token_data(TRANSFER)
    assert got is not None
    assert got.to_dict() == data.to_dict()
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_export_to_dash_writes_only_the_json_to_stdout_and_the_counts_to_stderr(
    cli: Cli, database_url: URL, tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a file named - would appear
    data = make_token_data()
    path = write_json(tmp_path / "in.json", {namespace: {TRANSFER: data}})
    assert cli("import", str(path), env_url=database_url).returncode == 0

    result = cli("export", "-", "--namespace", namespace, env_url=database_url)

    assert result.returncode == 0, result.output
    assert result.stderr.splitlines() == [
        f"stdout: namespace {namespace!r}: 1 token(s)",
        "wrote 1 token(s) in 1 namespace(s) to stdout",
    ]
    document = json.loads(result.stdout)
    assert document["format_version"] == "2.0"
    assert list(document["data"]) == [namespace]
    piped = tmp_path / "piped.json"
    piped.write_text(result.stdout)
    got = JSONTokenStorage(piped, namespace=namespace).get_token_data(TRANSFER)
    assert got is not None
    assert got.to_dict() == data.to_dict()
    assert not Path("-").exists()


def test_export_to_dash_refuses_before_writing_anything(
    cli: Cli, database_url: URL, tmp_path: Path, namespace: str
) -> None:
    path = write_json(tmp_path / "in.json", {namespace: {TRANSFER: make_token_data()}})
    assert cli("import", str(path), env_url=database_url).returncode == 0

    nothing = cli(
        "export", "-", "--namespace", namespace, "--namespace", "nosuch", env_url=database_url
    )
    forced = cli("export", "-", "--force", env_url=database_url)

    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr.splitlines() == [
        "error: <stdout>: not written: no token data in namespace(s) 'nosuch'"
    ]
    assert (forced.returncode, forced.stdout) == (2, "")
    assert "--force replaces a file; with - (stdout) there is none" in forced.stderr
    assert "(refused with -)" in " ".join(cli("export", "--help").stdout.split())


def test_export_to_dash_refuses_to_write_tokens_to_a_terminal(cli: Cli, tmp_path: Path) -> None:
    database = tmp_path / "tokens.db"
    terminal, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSTORE_SQL_")}
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tokenstore_sql",
                "export",
                "-",
                "--url",
                f"sqlite:///{database}",
            ],
            stdout=child,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
        shown = b""
        while select.select([terminal], [], [], 0)[0]:
            try:
                shown += os.read(terminal, 4096)
            except OSError:  # the terminal's other end is closed: nothing more to read
                break
    finally:
        os.close(child)
        os.close(terminal)

    assert result.returncode == 1
    assert result.stderr == (
        "error: refusing to write tokens to a terminal; redirect or pipe stdout\n"
    )
    assert shown == b""
    assert not database.exists()  # refused before the database was opened


def test_import_without_keys_into_an_encrypted_table_is_refused_unless_plaintext(
    cli: Cli, empty_database_url: URL, tmp_path: Path, namespace: str
) -> None:
    key = generate_key()
    with SQLAlchemyTokenStorage(empty_database_url, namespace="sealed", keys=[key]) as storage:
        storage.store_token_data_by_resource_server({AUTH: make_token_data(AUTH)})
    data = make_token_data()
    path = str(write_json(tmp_path / "t.json", {namespace: {TRANSFER: data}}))

    refused = cli("import", path, env_url=empty_database_url)
    contradictory = cli("import", path, "--plaintext", "--keys", key, env_url=empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        assert stored(engine, namespace) == {}
        allowed = cli("import", path, "--plaintext", env_url=empty_database_url)
        assert stored(engine, namespace) == {TRANSFER: data.to_dict()}
    finally:
        engine.dispose()

    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == [
        "error: the token table holds encrypted tokens, but no encryption keys were given; "
        "pass the keys (--keys, keys=), or --plaintext (allow_plaintext=True) to "
        "store these tokens in clear text anyway"
    ]
    assert contradictory.returncode == 2
    assert "--plaintext stores tokens in clear text, but keys were given" in contradictory.stderr
    assert allowed.returncode == 0, allowed.output
    assert allowed.stdout.splitlines()[-1] == "wrote 1 token(s) from 1 file(s)"
    for result in (refused, contradictory, allowed):
        assert key not in result.output
        assert data.access_token not in result.output


def test_discover_lists_globus_app_files_without_a_database(cli: Cli, tmp_path: Path) -> None:
    app_dir = tmp_path / ".globus" / "app" / "client-1" / "my-app"
    app_dir.mkdir(parents=True)
    good = write_json(app_dir / "tokens.json", {"DEFAULT": {TRANSFER: make_token_data()}})
    broken = app_dir / "sandbox-tokens.json"
    broken.write_text("{")

    result = cli("discover", "--home", str(tmp_path))
    empty = cli("discover", "--home", str(tmp_path / "nobody"))

    assert result.stdout.splitlines() == [
        f"{broken}: cannot be imported: is not valid JSON (line 1, column 2): truncated or corrupt",
        f"{good}: JSONTokenStorage 2.0, namespace 'DEFAULT': 1 token(s)",
    ]
    assert result.returncode == 1
    assert "1 of 2 file(s) cannot be imported" in result.stderr
    assert empty.returncode == 0
    assert "no GlobusApp token files under" in empty.stdout


def test_discover_lists_our_own_databases_with_the_url_to_use_them_by(cli: Cli, home: Path) -> None:
    import globus_sdk

    tmp_path = home
    config = globus_sdk.GlobusAppConfig()
    with SQLAlchemyTokenStorage.for_globus_app("c3", "ours", config, "DEFAULT") as storage:
        storage.store_token_data_by_resource_server({TRANSFER: make_token_data()})
        app_namespace = storage.namespace
    app_dir = tmp_path / ".globus" / "app" / "c3" / "ours"
    ours = app_dir / "tokens.tokenstore.db"
    importable = write_json(app_dir / "tokens.json", {"DEFAULT": {TRANSFER: make_token_data()}})

    result = cli("discover", "--home", str(tmp_path))

    assert result.returncode == 0, result.output
    url = f"sqlite:///{ours}"
    assert result.stdout.splitlines() == [
        f"{importable}: JSONTokenStorage 2.0, namespace 'DEFAULT': 1 token(s)",
        f"{ours}: tokenstore-sql database: --url {url}",
    ]
    assert cli("namespaces", "--url", url).stdout == f"{app_namespace}\n"


@pytest.mark.parametrize("policy", ["skip", "overwrite"])
def test_on_conflict_reaches_the_import(
    cli: Cli, database_url: URL, engine: Engine, tmp_path: Path, namespace: str, policy: str
) -> None:
    old = make_token_data(access_token="old", expires_at_seconds=1)
    new = make_token_data(access_token="new", expires_at_seconds=0)
    cli(
        "import",
        str(write_json(tmp_path / "a.json", {namespace: {TRANSFER: old}})),
        env_url=database_url,
    )

    result = cli(
        "import",
        "--on-conflict",
        policy,
        str(write_json(tmp_path / "b.json", {namespace: {TRANSFER: new}})),
        env_url=database_url,
    )

    assert result.returncode == 0, result.output
    expected = "new" if policy == "overwrite" else "old"
    assert stored(engine, namespace)[TRANSFER]["access_token"] == expected
