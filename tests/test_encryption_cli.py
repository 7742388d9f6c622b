"""generate-key and rotate-keys from the command line, and the guarded downgrade."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import URL, select

from tokenstore_sql import KeyRing, SQLAlchemyTokenStorage, TokenRow, create_engine

from .sdk import make_token_data


def _cli(*args: str, keys: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TOKENSTORE_SQL_KEYS", "TOKENSTORE_SQL_URL")
    }
    if keys is not None:
        env["TOKENSTORE_SQL_KEYS"] = keys
    return subprocess.run(
        [sys.executable, "-m", "tokenstore_sql", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _key_ids(url: URL) -> set[str | None]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = set(connection.execute(select(TokenRow.token_key_id)).scalars())
    engine.dispose()
    return found


def test_generate_key_prints_a_usable_key() -> None:
    result = _cli("generate-key")

    assert result.returncode == 0
    key = result.stdout.strip()
    assert KeyRing([key]).primary_key_id
    assert _cli("generate-key").stdout.strip() != key


def test_rotate_keys_from_clear_to_a_to_b_end_to_end(empty_database_url: URL) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key_a, key_b = _cli("generate-key").stdout.strip(), _cli("generate-key").stdout.strip()
    storage = SQLAlchemyTokenStorage(url, namespace="user-1")
    token = make_token_data("rs", access_token="CLI-ACCESS-SECRET")
    storage.store_token_data_by_resource_server({"rs": token})
    storage.close()

    to_a = _cli("rotate-keys", "--url", url, keys=key_a)
    assert to_a.returncode == 0, to_a.stderr
    assert "rewrote 1 row(s)" in to_a.stdout
    assert _key_ids(empty_database_url) == {KeyRing([key_a]).primary_key_id}

    to_b = _cli("rotate-keys", "--url", url, "--batch-size", "1", keys=f"{key_b},{key_a}")
    assert to_b.returncode == 0, to_b.stderr
    assert _key_ids(empty_database_url) == {KeyRing([key_b]).primary_key_id}

    with SQLAlchemyTokenStorage(url, namespace="user-1", encryption_keys=[key_b]) as only_b:
        assert only_b.get_token_data("rs").access_token == "CLI-ACCESS-SECRET"  # type: ignore[union-attr]
    for output in (to_a.stdout, to_a.stderr, to_b.stdout, to_b.stderr):
        assert "CLI-ACCESS-SECRET" not in output
        assert key_a not in output
        assert key_b not in output


def test_rotate_keys_without_the_sealing_key_fails_naming_the_rows(
    empty_database_url: URL,
) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key_a, key_b = _cli("generate-key").stdout.strip(), _cli("generate-key").stdout.strip()
    with SQLAlchemyTokenStorage(url, namespace="user-1", encryption_keys=[key_a]) as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    result = _cli("rotate-keys", "--url", url, keys=key_b)

    assert result.returncode == 1
    assert "1 row(s) could not be decrypted" in result.stderr
    assert "'user-1'/'rs'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rotate_keys_without_keys_is_refused() -> None:
    result = _cli("rotate-keys", "--url", "sqlite:///unused.db")
    assert result.returncode == 1
    assert "TOKENSTORE_SQL_KEYS" in result.stderr


def test_downgrade_below_0002_refuses_while_rows_are_encrypted(empty_database_url: URL) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    key = _cli("generate-key").stdout.strip()
    with SQLAlchemyTokenStorage(url, namespace="user-1", encryption_keys=[key]) as storage:
        storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    refused = _cli("downgrade", "--url", url, "0001")
    assert refused.returncode == 1
    assert "rotate-keys --decrypt" in refused.stderr
    assert "Traceback" not in refused.stderr

    decrypted = _cli("rotate-keys", "--url", url, "--decrypt", keys=key)
    assert decrypted.returncode == 0
    assert decrypted.stdout.startswith("stored 1 row(s) in clear text;")
    downgraded = _cli("downgrade", "--url", url, "0001")
    assert downgraded.returncode == 0, downgraded.stderr
    assert "revision 0001" in downgraded.stdout
