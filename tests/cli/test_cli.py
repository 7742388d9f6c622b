"""The tokenstore-sql command line, run as a separate process the way users run it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from sqlalchemy import URL, inspect, make_url, text

import tokenstore_sql
import tokenstore_sql.errors
from tests.support.cli import Cli, Run
from tests.support.databases import SERVER_PARAMS
from tests.support.sdk import make_token_data
from tokenstore_sql import SQLAlchemyTokenStorage, create_engine, schema
from tokenstore_sql import cli as cli_module
from tokenstore_sql.models import TOKENS_TABLE, VERSION_TABLE

PASSWORD = "hunter2"
URL_COMMANDS = ("upgrade", "downgrade base --yes", "current", "namespaces")


@pytest.fixture
def url(empty_database_url: URL) -> str:
    """The empty test database as a command-line argument, password included."""
    return empty_database_url.render_as_string(hide_password=False)


def _one_line_error(result: Run, status: int = 1) -> str:
    """Assert the run failed with ``status`` and one line on stderr; return that line."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _store_tokens(url: str, tokens_by_namespace: dict[str, str]) -> None:
    for namespace, token in tokens_by_namespace.items():
        data = make_token_data("rs", access_token=token, refresh_token=f"{token}-refresh")
        with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            storage.store_token_data_by_resource_server({"rs": data})


def _assert_no_token_printed(cli: Cli, tokens: list[str]) -> None:
    printed = cli.everything_printed()
    for token in tokens:
        assert token not in printed


def _schema_state(url: str) -> tuple[str | None, bool]:
    """The database's revision and whether the token table exists."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return schema.current_revision(connection), inspect(connection).has_table(TOKENS_TABLE)
    finally:
        engine.dispose()


# --- help -------------------------------------------------------------------------------


def test_help_describes_the_tool_and_lists_every_command(cli: Cli) -> None:
    result = cli("--help")

    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert "schema" in result.stdout
    assert "TOKENSTORE_SQL_URL" in result.stdout
    assert "--url" in result.stdout
    for command in ("upgrade", "downgrade", "current", "namespaces", *cli_module.main.commands):
        assert f"  {command} " in result.stdout, command


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ("upgrade", ["REVISION", "head", "lock", "Back up"]),
        ("downgrade", ["REVISION", "-1", "base", "drops"]),
        ("current", ["revision", "head"]),
        ("namespaces", ["namespaces", "one per line"]),
    ],
)
def test_each_command_help_explains_the_command_and_its_url(
    cli: Cli, command: str, phrases: list[str]
) -> None:
    result = cli(command, "--help", process=True)  # the usage line names the program

    assert result.returncode == 0, result.stderr
    assert f"Usage: python -m tokenstore_sql {command} [OPTIONS]" in result.stdout
    assert "--url URL" in result.stdout
    assert "TOKENSTORE_SQL_URL" in result.stdout
    text_only = " ".join(result.stdout.split())  # help wraps to the terminal width
    for phrase in phrases:
        assert phrase in text_only, phrase


@pytest.mark.parametrize("command", sorted(cli_module.main.commands))
def test_every_registered_command_has_a_help_summary(cli: Cli, command: str) -> None:
    result = cli(command, "--help")

    assert result.returncode == 0, result.stderr
    summary = cli_module.main.commands[command].get_short_help_str(limit=200)
    assert len(summary) > 10
    assert summary.rstrip(".") in " ".join(result.stdout.split())


def _every_parameter() -> Iterator[tuple[str, click.Context, click.Parameter]]:
    for name, command in sorted(cli_module.main.commands.items()):
        context = click.Context(command, info_name=name)
        for parameter in command.get_params(context):
            yield name, context, parameter


def test_every_option_that_reads_a_variable_says_so_in_one_wording() -> None:
    variables = set()
    for name, context, parameter in _every_parameter():
        if not isinstance(parameter, click.Option):
            continue
        record = parameter.get_help_record(context)
        assert record is not None, (name, parameter.opts)
        # click writes "[env var: NAME]" from the option itself; no second wording by hand
        assert "TOKENSTORE_SQL_" not in (parameter.help or ""), (name, parameter.opts)
        assert "$" not in (parameter.help or ""), (name, parameter.opts)
        if parameter.envvar:
            assert isinstance(parameter.envvar, str)
            assert f"[env var: {parameter.envvar}" in record[1], (name, parameter.opts)
            variables.add(parameter.envvar)
    assert variables == {
        "TOKENSTORE_SQL_URL",
        "TOKENSTORE_SQL_KEYS",
        "TOKENSTORE_SQL_TABLE_PREFIX",
        "TOKENSTORE_SQL_SCHEMA",
    }


def test_every_option_that_takes_a_value_has_an_uppercase_metavar() -> None:
    for name, context, parameter in _every_parameter():
        if not isinstance(parameter, click.Option) or parameter.is_flag:
            continue
        metavar = parameter.metavar or ""
        assert re.fullmatch(r"[A-Z][A-Z_]*", metavar), (name, parameter.opts, metavar)
        if isinstance(parameter.type, click.Choice):  # the metavar hides them: help names them
            record = parameter.get_help_record(context)
            assert record is not None
            for choice in parameter.type.choices:
                assert str(choice) in record[1], (name, parameter.opts, choice)


def test_version_names_the_package_version(cli: Cli) -> None:
    result = cli("--version")

    assert result.returncode == 0
    assert tokenstore_sql.__version__ in result.stdout


def test_console_script_next_to_the_interpreter_reports_like_python_m(
    cli: Cli, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("tokenstore-sql")
    assert script.is_file(), f"the tokenstore-sql console script is not installed at {script}"
    url = f"sqlite:///{tmp_path / 'tokens.db'}"

    from_script = cli("current", "--url", url, program=[str(script)])
    from_module = cli("current", "--url", url, process=True)

    assert from_script.returncode == 0, from_script.stderr
    assert from_script.stdout == from_module.stdout
    assert schema.head_revision() in from_script.stdout


# --- the schema lifecycle on every backend ---------------------------------------------


def test_current_on_an_empty_database_says_none_and_names_the_head(cli: Cli, url: str) -> None:
    result = cli("current", "--url", url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("none")
    assert f"head is {schema.head_revision()}" in result.stdout
    assert _schema_state(url) == (None, False)


def test_upgrade_creates_the_schema_at_head_and_current_then_says_head(cli: Cli, url: str) -> None:
    head = schema.head_revision()

    upgraded = cli("upgrade", "--url", url)

    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"database is at revision {head}"
    assert _schema_state(url) == (head, True)

    current = cli("current", "--url", url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{head} (head)"


def test_namespaces_lists_what_the_storage_stored_and_never_a_token(cli: Cli, url: str) -> None:
    tokens = {"bob": "TOKEN-OF-BOB-SECRET", "alice": "TOKEN-OF-ALICE-SECRET"}
    assert cli("upgrade", "--url", url).returncode == 0
    _store_tokens(url, tokens)

    result = cli("namespaces", "--url", url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["alice", "bob"]
    cli("current", "--url", url)
    _assert_no_token_printed(cli, [*tokens.values(), *(f"{t}-refresh" for t in tokens.values())])


def test_downgrade_base_removes_the_schema(cli: Cli, url: str) -> None:
    _store_tokens(url, {"carol": "TOKEN-OF-CAROL-SECRET"})
    assert _schema_state(url) == (schema.head_revision(), True)

    refused = cli("downgrade", "base", "--url", url)  # no terminal to ask on
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert _schema_state(url) == (schema.head_revision(), True)

    result = cli("downgrade", "base", "--url", url, "--yes")

    assert result.returncode == 0, result.stderr
    assert "base" in result.stdout
    assert _schema_state(url) == (None, False)
    engine = create_engine(url)
    try:
        assert not inspect(engine).has_table(VERSION_TABLE)  # nothing left behind
    finally:
        engine.dispose()
    after = cli("current", "--url", url)
    assert after.stdout.startswith("none")
    _assert_no_token_printed(cli, ["TOKEN-OF-CAROL-SECRET"])


@pytest.mark.parametrize("placed", ["after", "before"])
def test_downgrade_minus_one_steps_back_one_revision_as_the_help_says(
    cli: Cli, url: str, placed: str
) -> None:
    _store_tokens(url, {"dave": "TOKEN-OF-DAVE-SECRET"})
    head = schema.head_revision()
    arguments = ["-1", "--url", url] if placed == "after" else ["--url", url, "-1"]

    result = cli("downgrade", *arguments)

    assert result.returncode == 0, result.stderr
    previous = schema._script().get_revision(head).down_revision
    assert _schema_state(url)[0] == previous
    assert f"revision {previous}" in result.stdout
    assert "-1 for one step" in cli("downgrade", "--help").stdout


# --- --json, for scripts and monitoring ------------------------------------------------


def _json(result: Run) -> object:
    """The one JSON document a run printed on stdout."""
    assert len(result.stdout.splitlines()) == 1, result.stdout
    return json.loads(result.stdout)


def test_current_and_check_json_give_one_document_and_keep_the_exit_status(
    cli: Cli, url: str
) -> None:
    head = schema.head_revision()
    pending = {"status": "upgrade-pending", "revision": None, "head": head, "up_to_date": False}
    at_head = {"status": "ok", "revision": head, "head": head, "up_to_date": True}

    before = [cli(command, "--url", url, "--json") for command in ("current", "check")]
    assert cli("upgrade", "--url", url).returncode == 0
    after = [cli(command, "--url", url, "--json") for command in ("current", "check")]

    assert [_json(result) for result in before] == [pending, pending]
    assert before[0].returncode == 0
    assert "run `tokenstore-sql upgrade`" in _one_line_error(before[1])  # as without --json
    assert [_json(result) for result in after] == [at_head, at_head]
    assert [(result.returncode, result.stderr) for result in after] == [(0, ""), (0, "")]


def test_check_json_on_an_unknown_revision_says_database_newer_with_status_3(
    cli: Cli, unknown_revision_url: str
) -> None:
    newer = {
        "status": "database-newer",
        "revision": "ffff",
        "head": schema.head_revision(),
        "up_to_date": False,
    }

    checked = cli("check", "--url", unknown_revision_url, "--json")
    current = cli("current", "--url", unknown_revision_url, "--json")

    assert _json(checked) == newer
    assert "upgrade the tokenstore-sql package" in _one_line_error(checked, status=3)
    assert (current.returncode, _json(current)) == (0, newer)


@pytest.mark.sqlite
def test_check_json_names_a_table_that_is_not_ours_and_current_refuses_it(
    cli: Cli, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {TOKENS_TABLE} (namespace VARCHAR(20))"))
    engine.dispose()

    checked = cli("check", "--url", url, "--json")
    current = cli("current", "--url", url, "--json")

    assert _json(checked) == {
        "status": "not-managed",
        "revision": None,
        "head": schema.head_revision(),
        "up_to_date": False,
    }
    assert "not managed by tokenstore-sql" in _one_line_error(checked)
    assert "not managed by tokenstore-sql" in _one_line_error(current)
    assert current.stdout == ""


def test_namespaces_and_stats_json_count_what_is_stored_and_never_show_a_token(
    cli: Cli, url: str
) -> None:
    tokens = {"bob": "TOKEN-OF-BOB-SECRET", "alice": "TOKEN-OF-ALICE-SECRET"}
    _store_tokens(url, tokens)

    names = cli("namespaces", "--url", url, "--json")
    counted = cli("stats", "--url", url, "--json")
    by_namespace = cli("stats", "--url", url, "--json", "--by", "namespace")

    assert _json(names) == ["alice", "bob"]
    one = {"rows": 1, "expired": 0, "unusable": 0}
    assert _json(counted) == {
        "by_namespace": [{"name": "alice", **one}, {"name": "bob", **one}],
        "by_resource_server": [{"name": "rs", "rows": 2, "expired": 0, "unusable": 0}],
        "total": {"rows": 2, "expired": 0, "unusable": 0},
    }
    assert _json(by_namespace) == {
        "by_namespace": [{"name": "alice", **one}, {"name": "bob", **one}],
        "total": {"rows": 2, "expired": 0, "unusable": 0},
    }
    _assert_no_token_printed(cli, [*tokens.values(), *(f"{t}-refresh" for t in tokens.values())])


@pytest.mark.parametrize("command", ["current", "check", "namespaces", "stats"])
def test_json_errors_stay_one_line_on_stderr_with_their_exit_status(cli: Cli, command: str) -> None:
    unreachable = f"postgresql+psycopg://user:{PASSWORD}@127.0.0.1:1/x"

    result = cli(command, "--url", unreachable, "--json")

    assert _one_line_error(result, status=4).startswith("error: could not ")
    assert result.stdout == ""
    assert PASSWORD not in cli.everything_printed()


# --- where the URL comes from ----------------------------------------------------------


def test_without_a_url_the_command_says_both_ways_to_give_one(cli: Cli) -> None:
    result = cli("current")

    assert result.returncode == 2
    assert "no database URL: pass --url URL or set TOKENSTORE_SQL_URL" in result.stderr
    assert "[required]" not in cli("current", "--help").stdout


def test_url_falls_back_to_the_environment_variable(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"

    result = cli("upgrade", env_url=url)

    assert result.returncode == 0, result.stderr
    assert _schema_state(url)[0] == schema.head_revision()


def test_url_option_wins_over_the_environment_variable(cli: Cli, tmp_path: Path) -> None:
    chosen = f"sqlite:///{tmp_path / 'chosen.db'}"
    ignored = f"sqlite:///{tmp_path / 'ignored.db'}"

    result = cli("upgrade", "--url", chosen, env_url=ignored)

    assert result.returncode == 0, result.stderr
    assert _schema_state(chosen)[0] == schema.head_revision()
    assert not (tmp_path / "ignored.db").exists()


@pytest.mark.parametrize("command", URL_COMMANDS)
def test_no_url_fails_naming_the_option_or_the_variable(cli: Cli, command: str) -> None:
    result = cli(*command.split())

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--url" in result.stderr or "TOKENSTORE_SQL_URL" in result.stderr
    assert result.stdout == ""


# --- failures are one line, without secrets --------------------------------------------


@pytest.mark.parametrize(
    "bad_url",
    [
        "not-a-url",
        "://",
        f"postgresql+psycopg://user:{PASSWORD}@host:notaport/x",
    ],
)
def test_an_invalid_url_fails_with_one_line_and_no_password(cli: Cli, bad_url: str) -> None:
    line = _one_line_error(cli("current", "--url", bad_url))

    assert line.startswith("error:")
    assert "URL" in line
    assert PASSWORD not in cli.everything_printed()


@pytest.mark.parametrize(
    "unreachable",
    [
        f"postgresql+psycopg://user:{PASSWORD}@127.0.0.1:1/x",
        f"mysql+pymysql://user:{PASSWORD}@127.0.0.1:1/x",
    ],
)
@pytest.mark.parametrize("command", URL_COMMANDS)
def test_an_unreachable_server_fails_with_one_line_and_no_password(
    cli: Cli, command: str, unreachable: str
) -> None:
    line = _one_line_error(cli(*command.split(), "--url", unreachable), status=4)

    # every command words it alike, with its own exit status
    assert line.startswith("error: could not ")
    assert "127.0.0.1:1" in line
    assert PASSWORD not in cli.everything_printed()


def test_a_driver_that_is_not_installed_is_named_in_one_line(cli: Cli) -> None:
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")

    line = _one_line_error(
        cli("current", "--url", f"postgresql+psycopg2://user:{PASSWORD}@127.0.0.1/x")
    )

    assert "driver" in line
    assert PASSWORD not in cli.everything_printed()


@pytest.mark.parametrize(
    ("scheme", "hint"),
    [
        ("mysql", "use a mysql+pymysql:// URL"),
        ("postgres", "the URL scheme for PostgreSQL is postgresql, not postgres"),
        ("oracle", "tokenstore-sql supports sqlite, postgresql+psycopg and mysql+pymysql"),
    ],
)
def test_a_url_whose_driver_is_missing_names_the_url_that_works(
    cli: Cli, scheme: str, hint: str
) -> None:
    if scheme == "mysql" and importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("mysqlclient is installed here")
    url = f"{scheme}://user:{PASSWORD}@127.0.0.1/x"

    line = _one_line_error(cli("current", "--url", url))

    assert hint in line
    assert PASSWORD not in cli.everything_printed()
    with pytest.raises(ImportError, match=hint.replace("+", r"\+")) as raised:
        tokenstore_sql.create_engine(url)
    assert isinstance(raised.value, tokenstore_sql.errors.MissingDriverError)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("ssl_ca=/nonexistent/ca.pem", "ssl_ca file '/nonexistent/ca.pem' cannot be read"),
        ("charset=utf8mb4x", "charset 'utf8mb4x' is not one MySQL knows"),
    ],
)
def test_a_mysql_url_the_driver_would_choke_on_fails_in_one_line(
    cli: Cli, query: str, problem: str
) -> None:
    url = f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/x?{query}"

    line = _one_line_error(cli("current", "--url", url))

    assert problem in line
    assert PASSWORD not in cli.everything_printed()
    with pytest.raises(tokenstore_sql.errors.ConfigurationError, match=problem):
        tokenstore_sql.create_engine(url)


@pytest.mark.parametrize("backend", SERVER_PARAMS, indirect=True)
@pytest.mark.parametrize("wrong", ["database", "user"])
def test_a_connection_failure_names_its_cause_with_code_and_name(
    cli: Cli, server_url: str, backend: str, wrong: str
) -> None:
    base = make_url(server_url)
    url = (
        base.set(database="tokenstore_no_such_db")
        if wrong == "database"
        else base.set(username="tokenstore_no_such_user", password=PASSWORD)
    )
    rendered = url.render_as_string(hide_password=False)

    # psycopg gives these no code, so they are retried (and reported as unreachable)
    status = 4 if backend == "postgresql" else 1
    line = _one_line_error(cli("current", "--url", rendered), status=status)

    expected = {
        ("postgresql", "database"): "(no such database)",
        ("postgresql", "user"): "(no such user (role))",
        ("mysql", "database"): "(code 1049 no such database)",
        ("mysql", "user"): "access denied)",  # 1045, or 1698 on MariaDB
    }[backend, wrong]
    assert line.endswith(expected), line
    assert PASSWORD not in cli.everything_printed()
    started = time.monotonic()
    with pytest.raises(tokenstore_sql.TokenStoreError) as raised:
        tokenstore_sql.SQLAlchemyTokenStorage(rendered)
    assert time.monotonic() - started < 10
    assert str(raised.value).endswith(expected)


def test_a_sqlite_path_that_cannot_be_created_fails_with_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")

    line = _one_line_error(cli("upgrade", "--url", f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"))

    assert line.startswith("error:")
    assert "does not exist" in line


def test_a_sqlite_url_in_a_directory_that_does_not_exist_creates_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    typo = tmp_path / "typo-dir" / "x.db"

    line = _one_line_error(cli("upgrade", "--url", f"sqlite:///{typo}"))

    assert f"{typo.parent}, does not exist" in line
    assert not typo.parent.exists()


# --- a database at a revision this package does not know -------------------------------


DAVES_TOKEN = "TOKEN-OF-DAVE-SECRET"


@pytest.fixture
def unknown_revision_url(url: str) -> str:
    """A database with tokens whose version table names revision ffff."""
    _store_tokens(url, {"dave": DAVES_TOKEN})
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff'"))
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize("command", ["namespaces", "upgrade"])
def test_an_unknown_revision_fails_asking_for_a_newer_package(
    cli: Cli, unknown_revision_url: str, command: str
) -> None:
    line = _one_line_error(cli(command, "--url", unknown_revision_url))

    assert "ffff" in line
    assert "upgrade the tokenstore-sql package" in line
    assert _schema_state(unknown_revision_url)[0] == "ffff"
    _assert_no_token_printed(cli, [DAVES_TOKEN])


def test_current_on_an_unknown_revision_does_not_advise_tokenstore_sql_upgrade(
    cli: Cli, unknown_revision_url: str
) -> None:
    result = cli("current", "--url", unknown_revision_url)

    assert "ffff" in result.stdout + result.stderr
    assert "run `tokenstore-sql upgrade`" not in result.stdout + result.stderr
    _assert_no_token_printed(cli, [DAVES_TOKEN])


def test_read_only_commands_read_a_missing_sqlite_file_as_empty_without_creating_it(
    cli: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "tokens.db"
    url = f"sqlite:///{missing}"

    current = cli("current", "--url", url)
    namespaces = cli("namespaces", "--url", url)

    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith("none")
    assert "tokenstore-sql upgrade" in _one_line_error(namespaces)
    assert not missing.parent.exists()
