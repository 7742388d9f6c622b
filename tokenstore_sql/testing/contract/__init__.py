"""``TokenStorageContract``: what every globus-sdk ``TokenStorage`` does, as pytest tests.

Subclass it in a test module (under a name pytest collects, ``Test...``) and provide a
``token_storage_factory`` fixture; the tests run on the storages that factory makes.
Nothing here knows how a storage keeps its data: each expectation holds for globus-sdk's
own ``MemoryTokenStorage``, ``SQLiteTokenStorage`` and ``JSONTokenStorage``.
"""

from __future__ import annotations

from ._support import MakeTokenStorage, TokenStorageFactory
from .keys import KeyContract
from .responses import ResponseContract
from .storing import StoringContract

__all__ = ["MakeTokenStorage", "TokenStorageContract", "TokenStorageFactory"]


class TokenStorageContract(StoringContract, KeyContract, ResponseContract):
    """The storage-independent behaviour of ``TokenStorage``, for any implementation.

    Fixtures: ``token_storage_factory`` (yours, see
    :data:`~tokenstore_sql.testing.TokenStorageFactory`);
    ``make_token_storage`` and ``token_storage`` (the contract's, for your own tests in
    the subclass too).

    :cvar preserves_extra: set to ``True`` where the storage keeps
        ``TokenStorageData.extra``; globus-sdk's own storages drop it, so by default the
        contract only checks that ``extra`` never disturbs the other fields
    """
