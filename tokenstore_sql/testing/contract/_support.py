"""What the contract's tests share: the factory wrapper, field helpers and fixtures."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from ..._sdk import TokenStorage, TokenStorageData
from ..data import unique_namespace

TokenStorageFactory = Callable[[str], TokenStorage]
"""The fixture a user provides: a fresh storage in the given namespace.

Every storage it makes during one test must share one store (one file, one database,
one dict), as the storages of one application do, so that namespaces are told apart
by the storage and not by accident.
"""

# The standard fields of TokenStorageData (extra aside), as its constructor names them,
# read from globus-sdk itself so that a field it adds is compared too.
_FIELDS = tuple(name for name in inspect.signature(TokenStorageData).parameters if name != "extra")


class MakeTokenStorage:
    """The contract's own factory: unique namespaces, and every storage closed at the end.

    :param factory: the user's ``token_storage_factory``
    """

    def __init__(self, factory: TokenStorageFactory) -> None:
        self._factory = factory
        self._closing = contextlib.ExitStack()

    def __call__(self, namespace: str | None = None) -> TokenStorage:
        """Return a storage from the factory, in ``namespace`` or in a new one.

        :param namespace: the namespace; a name no other test uses when omitted
        """
        storage = self._factory(unique_namespace() if namespace is None else namespace)
        close = getattr(storage, "close", None)  # not every storage has close()
        if callable(close):
            self._closing.callback(close)
        return storage

    def close(self) -> None:
        """Close every storage made, the last made first."""
        self._closing.close()


def fields_of(data: TokenStorageData | None) -> dict[str, Any]:
    """Return the standard fields of token data, ``None`` ones included."""
    assert data is not None, "no token data where some was stored"
    assert isinstance(data, TokenStorageData)
    return {field: getattr(data, field) for field in _FIELDS}


def stored(storage: TokenStorage, resource_server: str) -> TokenStorageData:
    """Return the token data stored for ``resource_server``, failing where there is none."""
    data = storage.get_token_data(resource_server)
    assert data is not None, f"no token data for {resource_server!r}"
    return data


def each_key(keys: dict[str, Any]) -> pytest.MarkDecorator:
    """Parametrize ``key`` over the values of ``keys``, named by its keys."""
    return pytest.mark.parametrize("key", list(keys.values()), ids=list(keys))


class ContractBase:
    """The fixtures every part of the contract uses; see ``TokenStorageContract``."""

    preserves_extra: ClassVar[bool] = False

    @pytest.fixture
    def make_token_storage(
        self, token_storage_factory: TokenStorageFactory
    ) -> Iterator[MakeTokenStorage]:
        """Yield the factory the tests use: new namespaces unless named; closes storages."""
        made = MakeTokenStorage(token_storage_factory)
        yield made
        made.close()

    @pytest.fixture
    def token_storage(self, make_token_storage: MakeTokenStorage) -> TokenStorage:
        """Return a storage in a namespace of its own."""
        return make_token_storage()
