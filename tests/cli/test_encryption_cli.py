"""generate-key and rotate-keys from the command line, and the guarded downgrade."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url, select

from tests.support import REPO_ROOT
from tests.support.cli import Cli
from tests.support.sdk import make_token_data
from tokenstore_sql import (
    RetryPolicy,
    SQLAlchemyTokenStorage,
    StoreSettings,
    create_engine,
    generate_key,
)
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.models import TokenRow
from tokenstore_sql.rotation import rotate_keys


def _key_ids(url: URL) -> set[str | None]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = set(connection.execute(select(TokenRow.token_key_id)).scalars())
    engine.dispose()
    return found


def test_generate_key_prints_a_usable_key(cli: Cli) -> None:
    result = cli("generate-key")

    assert result.returncode == 0
    key = result.stdout.strip()
    assert KeyRing([key]).primary_key_id
    assert cli("generate-key").stdout.strip() != key


def test_rotate_keys_from_clear_to_a_to_b_end_to_end(cli: Cli, empty_database_url: URL) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key_a, key_b = cli("generate-key").stdout.strip(), cli("generate-key").stdout.strip()
    storage = SQLAlchemyTokenStorage(url, namespace="user-1")
    token = make_token_data("rs", access_token="CLI-ACCESS-SECRET")
    storage.store_token_data_by_resource_server({"rs": token})
    storage.close()

    to_a = cli("rotate-keys", "--url", url, keys=key_a)
    assert to_a.returncode == 0, to_a.stderr
    assert "rewrote 1 row(s)" in to_a.stdout
    assert _key_ids(empty_database_url) == {KeyRing([key_a]).primary_key_id}

    to_b = cli("rotate-keys", "--url", url, "--batch-size", "1", keys=f"{key_b},{key_a}")
    assert to_b.returncode == 0, to_b.stderr
    assert _key_ids(empty_database_url) == {KeyRing([key_b]).primary_key_id}

    with SQLAlchemyTokenStorage(url, namespace="user-1", keys=[key_b]) as only_b:
        assert only_b.get_token_data("rs").access_token == "CLI-ACCESS-SECRET"  # type: ignore[union-attr]
    for output in (to_a.stdout, to_a.stderr, to_b.stdout, to_b.stderr):
        assert "CLI-ACCESS-SECRET" not in output
        assert key_a not in output
        assert key_b not in output


def test_rotate_keys_without_the_sealing_key_fails_naming_the_rows(
    cli: Cli,
    empty_database_url: URL,
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key_a, key_b = cli("generate-key").stdout.strip(), cli("generate-key").stdout.strip()
    with SQLAlchemyTokenStorage(url, namespace="user-1", keys=[key_a]) as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    result = cli("rotate-keys", "--url", url, keys=key_b)

    assert result.returncode == 1
    assert "1 row(s) could not be decrypted" in result.stderr
    assert "'user-1'/'rs'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rotate_keys_without_keys_is_refused(cli: Cli) -> None:
    result = cli("rotate-keys", "--url", "sqlite:///unused.db")
    assert result.returncode == 1
    assert "TOKENSTORE_SQL_KEYS" in result.stderr


@pytest.mark.parametrize("command", [["rotate-keys"], ["export", "out.json"]])
def test_a_key_that_is_not_one_is_one_line_before_the_database_is_opened(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    database = tmp_path / "never-created.db"
    result = cli(*command, "--url", f"sqlite:///{database}", keys="not-a-key")

    assert result.returncode == 1
    assert result.stderr.startswith("error: encryption key #1")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not-a-key" not in result.stderr
    assert not database.exists()


def test_downgrade_below_0002_refuses_while_rows_are_encrypted(
    cli: Cli, empty_database_url: URL
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key = cli("generate-key").stdout.strip()
    with SQLAlchemyTokenStorage(url, namespace="user-1", keys=[key]) as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    refused = cli("downgrade", "--url", url, "0001")
    assert refused.returncode == 1
    assert "rotate-keys --decrypt" in refused.stderr
    assert "Traceback" not in refused.stderr

    decrypted = cli("rotate-keys", "--url", url, "--decrypt", keys=key)
    assert decrypted.returncode == 0
    assert decrypted.stdout.startswith("stored 1 row(s) in clear text;")
    downgraded = cli("downgrade", "--url", url, "0001")
    assert downgraded.returncode == 0, downgraded.stderr
    assert "revision 0001" in downgraded.stdout


# A process that stores a token 100 times a second, round-robin over a few keys, until
# told to stop by a file; it reports its count and any errors on stdout.
_WRITER = """
import sys, time, traceback
from pathlib import Path
from tokenstore_sql import SQLAlchemyTokenStorage
from tokenstore_sql.crypto import KeyRing
from tests.support.sdk import make_token_data

url, keys, ready, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
storage = SQLAlchemyTokenStorage(url, namespace="busy", keys=KeyRing.from_text(keys))
writes, errors = 0, []
while not stop.exists():
    started = time.monotonic()
    try:
        resource_server = f"rs-{writes % 10}"
        storage.store_token_data_by_resource_server(
            {resource_server: make_token_data(resource_server, access_token=f"busy-{writes}")}
        )
        writes += 1
    except Exception:
        errors.append(traceback.format_exc(limit=1))
    if writes == 20:
        ready.touch()
    time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))
print(writes, len(errors))
print("".join(errors[:3]))
"""


@contextmanager
def _writing_100_times_a_second(url: str, keys: str, tmp_path: Path) -> Iterator[list[int]]:
    """Run the writer process for the block; yield a list that gets [writes, errors]."""
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, keys, str(ready), str(stop)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    counts: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer did not start"
        yield counts
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    counts.extend(int(n) for n in out.split()[:2])
    assert counts[1] == 0, out


def _seed(url: str, key: str, namespaces: int) -> None:
    for n in range(namespaces):
        with SQLAlchemyTokenStorage(url, namespace=f"user-{n}", keys=[key]) as s:
            s.store_token_data_by_resource_server(
                {f"rs-{i}": make_token_data(f"rs-{i}") for i in range(10)}
            )


@pytest.mark.sqlite
def test_rotate_keys_on_sqlite_succeeds_beside_a_process_writing_100_times_a_second(
    cli: Cli,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    key_a, key_b = cli("generate-key").stdout.strip(), cli("generate-key").stdout.strip()
    _seed(url, key_a, 50)
    with _writing_100_times_a_second(url, f"{key_b},{key_a}", tmp_path) as counts:
        rotated = cli("rotate-keys", "--url", url, "--batch-size", "5", keys=f"{key_b},{key_a}")

    assert rotated.returncode == 0, rotated.stderr
    assert counts[0] >= 20
    assert _key_ids(make_url(url)) == {KeyRing([key_b]).primary_key_id}


@pytest.mark.sqlite
def test_each_rotation_batch_takes_the_write_lock_up_front_needing_no_retry(
    tmp_path: Path,
) -> None:
    # A batch that began with a deferred BEGIN read first and then could not write after
    # the other process's commit (code 517): it only got through on retries.
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    key_a, key_b = generate_key(), generate_key()
    _seed(url, key_a, 50)
    engine = create_engine(url)
    try:
        with _writing_100_times_a_second(url, f"{key_b},{key_a}", tmp_path):
            report = rotate_keys(
                engine,
                StoreSettings(keys=[key_b, key_a], retry=RetryPolicy(attempts=1)),
                batch_size=5,
            )
    finally:
        engine.dispose()
    assert report.rewritten >= 500
    assert report.unreadable == []
