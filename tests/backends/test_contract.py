"""The TokenStorage contract (tokenstore_sql.testing) on our storages and on globus-sdk's.

globus-sdk's storages are the reference for what the interface means: the contract
holds for them too. Ours run on each backend, sync and async (the async storage behind
the sync method names, tests/support/apis.py). What holds for our storage only (SQL, exact
collations, encryption, bad input) is tested in the other modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.sdk import MemoryTokenStorage, SQLiteTokenStorage, TokenStorage
from tests.support.sdk_files import JSONTokenStorage
from tokenstore_sql.testing import TokenStorageContract, TokenStorageFactory

pytest_plugins = ["tokenstore_sql.testing"]


class TestOurStorages(TokenStorageContract):
    """SQLAlchemyTokenStorage and AsyncSQLAlchemyTokenStorage, on each backend."""

    preserves_extra = True

    @pytest.fixture
    def token_storage_factory(self, make_api_storage: Callable[..., Any]) -> TokenStorageFactory:
        return make_api_storage  # every storage on the test's database


# globus-sdk's storages need no server; the mark puts them in the SQLite tier, which CI
# also runs on globus-sdk 3.x.
@pytest.mark.sqlite
class TestSDKMemoryTokenStorage(TokenStorageContract):
    @pytest.fixture
    def token_storage_factory(self) -> TokenStorageFactory:
        shared: dict[str, Any] = {}  # one in-memory "database" for all namespaces

        def make(namespace: str) -> TokenStorage:
            storage = MemoryTokenStorage(namespace=namespace)
            storage._tokens = shared
            return storage

        return make


@pytest.mark.sqlite
class TestSDKSQLiteTokenStorage(TokenStorageContract):
    @pytest.fixture
    def token_storage_factory(self, tmp_path: Path) -> TokenStorageFactory:
        return lambda namespace: SQLiteTokenStorage(tmp_path / "sdk.db", namespace=namespace)


@pytest.mark.sqlite
class TestSDKJSONTokenStorage(TokenStorageContract):
    @pytest.fixture
    def token_storage_factory(self, tmp_path: Path) -> TokenStorageFactory:
        return lambda namespace: JSONTokenStorage(tmp_path / "sdk.json", namespace=namespace)
