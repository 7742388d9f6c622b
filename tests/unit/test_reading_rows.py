"""Reading a fetched row back into token data, without a server: values, types, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects.sqlite import pysqlite

from tokenstore_sql import UnreadableTokenDataError
from tokenstore_sql.codec import token_data_from_row
from tokenstore_sql.compiled import CompiledStatement
from tokenstore_sql.statements import statements_for

ROW: dict[str, Any] = {
    "resource_server": "rs",
    "identity_id": "ae341a98-d274-11e5-b888-dbae3a8ba545",
    "scope": "openid",
    "access_token": "SECRET-access",
    "refresh_token": None,
    "expires_at_seconds": 2_000_000_000,
    "token_type": "Bearer",
    "extra": {},
    "token_key_id": None,
}


def _select_one() -> CompiledStatement:
    return CompiledStatement.compile(statements_for().select_one, pysqlite.dialect())


def test_an_empty_extra_is_a_new_dict_on_every_read_and_others_are_decoded() -> None:
    statement = _select_one()
    fetched = [ROW[name] for name in statement.column_names]
    at = statement.column_names.index("extra")

    first = statement.row([*fetched[:at], "{}", *fetched[at + 1 :]])
    second = statement.row([*fetched[:at], "{}", *fetched[at + 1 :]])
    decoded = statement.row([*fetched[:at], '{"a": [1, 2]}', *fetched[at + 1 :]])

    assert first["extra"] == second["extra"] == {}
    assert first["extra"] is not second["extra"]  # a caller may change its own
    assert decoded["extra"] == {"a": [1, 2]}


def test_a_row_of_the_wrong_width_is_refused() -> None:
    statement = _select_one()
    with pytest.raises(ValueError, match="zip"):
        statement.row(["rs"])


class _Text(str):
    """A subclass of str, as some drivers return."""


def test_well_stored_rows_read_back_subclasses_included() -> None:
    data = token_data_from_row("ns", {**ROW, "scope": _Text("openid"), "refresh_token": "r"})
    assert (data.scope, data.refresh_token, data.extra) == ("openid", "r", {})


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("expires_at_seconds", True, "expires_at_seconds is a bool"),
        ("expires_at_seconds", "2000000000", "expires_at_seconds is a str"),
        ("scope", None, "scope is missing"),
        ("extra", [], "extra is a list"),
        ("token_type", 7, "token_type is an int"),
    ],
)
def test_a_wrongly_stored_value_is_named_without_the_tokens(
    field: str, value: Any, problem: str
) -> None:
    with pytest.raises(UnreadableTokenDataError) as caught:
        token_data_from_row("ns", {**ROW, field: value})
    assert problem in str(caught.value)
    assert "SECRET" not in str(caught.value)
