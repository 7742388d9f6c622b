"""The globus-sdk ``TokenStorage`` contract as a pytest plugin, for any implementation.

In the ``conftest.py`` next to your tests::

    pytest_plugins = ["tokenstore_sql.testing"]

    @pytest.fixture
    def token_storage_factory(tmp_path):
        return lambda namespace: MyTokenStorage(tmp_path / "tokens.db", namespace=namespace)

and in one test module, the one that runs the contract::

    from tokenstore_sql.testing import TokenStorageContract

    class TestMyTokenStorage(TokenStorageContract):
        preserves_extra = True  # where your storage keeps TokenStorageData.extra

The tests are methods of :class:`TokenStorageContract`, so they run only where a class
that pytest collects inherits them. This plugin adds no tests by itself: it has pytest
rewrite the contract's ``assert`` statements (for readable failures) and supplies a
``token_storage_factory`` that fails with these instructions until yours replaces it.
The factory may also be a fixture of the subclass. It needs pytest, which tokenstore-sql
does not install; nothing outside this package imports it.

PYTEST_DONT_REWRITE: this module has no assertions; the marker keeps pytest from warning
that it was imported before ``pytest_plugins`` named it.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(f"{__name__}.contract")

from .contract import (  # noqa: E402  (after the rewrite hook is registered)
    MakeTokenStorage,
    TokenStorageContract,
    TokenStorageFactory,
)
from .data import dependent_token_response, token_data, token_response  # noqa: E402

__all__ = [
    "MakeTokenStorage",
    "TokenStorageContract",
    "TokenStorageFactory",
    "dependent_token_response",
    "token_data",
    "token_response",
    "token_storage_factory",
]

USAGE = (
    "define a fixture named token_storage_factory that returns a callable "
    "make(namespace: str) -> TokenStorage giving a fresh storage in that namespace; "
    "the storages it makes during one test must share one store "
    "(see tokenstore_sql.testing)"
)


@pytest.fixture
def token_storage_factory() -> TokenStorageFactory:
    """Stand in for the fixture you provide; fails with instructions."""
    pytest.fail(f"TokenStorageContract: {USAGE}", pytrace=False)
