"""store_token_response with real globus-sdk response objects, built offline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import globus_sdk
import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.sdk import ValidatingTokenStorage, load_response
from tokenstore_sql import SQLAlchemyTokenStorage

AUTH = "https://auth.globus.org"
CLIENT_ID = str(uuid.uuid4())
IDENTITY_ID = str(uuid.uuid4())


@pytest.fixture
def mocked_auth() -> Iterator[responses.RequestsMock]:
    """Globus Auth answered offline, including a real signed id_token and its key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    now = int(time.time())
    id_token = jwt.encode(
        {"sub": IDENTITY_ID, "aud": CLIENT_ID, "iss": AUTH, "iat": now, "exp": now + 600},
        key,
        algorithm="RS512",
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            f"{AUTH}/.well-known/openid-configuration",
            json={
                "issuer": AUTH,
                "jwks_uri": f"{AUTH}/jwk.json",
                "id_token_signing_alg_values_supported": ["RS512"],
            },
        )
        mock.get(f"{AUTH}/jwk.json", json={"keys": [public_jwk]})
        mock.post(
            f"{AUTH}/v2/oauth2/token",
            json={
                "access_token": "auth-access-SECRET",
                "refresh_token": "auth-refresh-SECRET",
                "scope": "openid profile",
                "expires_in": 172800,
                "token_type": "Bearer",
                "resource_server": "auth.globus.org",
                "id_token": id_token,
                "other_tokens": [
                    {
                        "access_token": "transfer-access-SECRET",
                        "refresh_token": "transfer-refresh-SECRET",
                        "scope": "urn:globus:auth:scope:transfer.api.globus.org:all",
                        "expires_in": 172800,
                        "token_type": "Bearer",
                        "resource_server": "transfer.api.globus.org",
                    }
                ],
            },
        )
        yield mock


def _exchange_code() -> globus_sdk.OAuthTokenResponse:
    client = globus_sdk.ConfidentialAppAuthClient(CLIENT_ID, "client-secret")
    client.oauth2_start_flow("https://example.org/callback", requested_scopes="openid")
    return client.oauth2_exchange_code_for_tokens("auth-code")


@pytest.mark.usefixtures("mocked_auth")
def test_token_response_stores_each_resource_server_with_identity(api_storage: Any) -> None:
    storage = api_storage  # both APIs
    response = _exchange_code()
    storage.store_token_response(response)

    stored = storage.get_token_data_by_resource_server()

    assert sorted(stored) == ["auth.globus.org", "transfer.api.globus.org"]
    for resource_server, data in stored.items():
        expected = response.by_resource_server[resource_server]
        assert data.identity_id == IDENTITY_ID
        assert data.access_token == expected["access_token"]
        assert data.refresh_token == expected["refresh_token"]
        assert data.expires_at_seconds == expected["expires_at_seconds"]
        assert data.scope == expected["scope"]
        assert data.token_type == "Bearer"


@responses.activate
def test_client_credentials_response_is_stored_without_identity(api_storage: Any) -> None:
    storage = api_storage  # both APIs
    meta = load_response("auth.oauth2_client_credentials_tokens").metadata
    client = globus_sdk.ConfidentialAppAuthClient(CLIENT_ID, "client-secret")
    response = client.oauth2_client_credentials_tokens(requested_scopes=meta["scope"])
    storage.store_token_response(response)

    stored = storage.get_token_data(meta["resource_server"])

    assert stored is not None
    assert stored.identity_id is None
    assert stored.refresh_token is None
    assert (
        stored.access_token == response.by_resource_server[meta["resource_server"]]["access_token"]
    )


@pytest.mark.usefixtures("mocked_auth")
def test_validating_storage_wrapping_ours_stores_and_reads(
    storage: SQLAlchemyTokenStorage,
) -> None:
    validating = ValidatingTokenStorage(storage)
    validating.store_token_response(_exchange_code())

    assert validating.identity_id == IDENTITY_ID
    assert sorted(validating.get_token_data_by_resource_server()) == [
        "auth.globus.org",
        "transfer.api.globus.org",
    ]
    assert storage.get_token_data("transfer.api.globus.org") is not None
    assert validating.remove_token_data("transfer.api.globus.org") is True
    assert storage.get_token_data("transfer.api.globus.org") is None
