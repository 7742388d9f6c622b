"""Encryption at rest for access and refresh tokens: a key ring of AES-256-GCM keys.

Why AES-GCM rather than Fernet: both are authenticated encryption from the
``cryptography`` package, but GCM takes associated data. Each token is sealed together
with its namespace, resource server and field name, so a ciphertext copied into another
row (another user's namespace, say) or into the other token column fails to decrypt
instead of being accepted. Fernet cannot bind a ciphertext to where it is stored.

A key is 32 random bytes, written as URL-safe base64 (:func:`generate_key`). The first
key of the ring encrypts; every key decrypts. Each ciphertext records the id of the key
that made it (the first 8 bytes of the key's SHA-256, as hex), so the right key is found
without trying them all, and rotation can tell which rows still need it.

Stored form: ``<key id>:<base64url(nonce || ciphertext || tag)>``, with a fresh random
96-bit nonce per token. Key ids are public; keys never leave this module's objects and
are not shown by ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import EncryptionKeyError, TokenStoreError

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_ID_HEX_LENGTH: Final = 16


class DecryptionError(TokenStoreError):
    """A sealed value could not be opened with the keys at hand (the reason, never a key)."""


def generate_key() -> str:
    """Return a new random key, as URL-safe base64 text."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _decode_key(position: int, key: str | bytes) -> bytes:
    text = key.encode("ascii") if isinstance(key, str) else key
    try:
        raw = base64.urlsafe_b64decode(text.strip())
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(f"encryption key #{position + 1} is not URL-safe base64") from None
    if len(raw) != KEY_BYTES:
        raise EncryptionKeyError(
            f"encryption key #{position + 1} decodes to {len(raw)} bytes; "
            f"expected {KEY_BYTES} (make one with `tokenstore-sql generate-key`)"
        )
    return raw


def key_id(raw_key: bytes) -> str:
    """Return the public id of a raw key."""
    return hashlib.sha256(raw_key).hexdigest()[:KEY_ID_HEX_LENGTH]


class KeyRing:
    """Keys for sealing and opening tokens: the first encrypts, all decrypt.

    :param keys: one or more keys from :func:`generate_key`, newest first
    :raises EncryptionKeyError: no key, or a malformed one (also a ``ValueError``)
    """

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        raw_keys = [_decode_key(i, key) for i, key in enumerate(keys)]
        if not raw_keys:
            raise EncryptionKeyError("an encryption key ring needs at least one key")
        self._raw_keys = raw_keys
        self._ciphers = {key_id(raw): AESGCM(raw) for raw in raw_keys}
        self.primary_key_id: str = key_id(raw_keys[0])
        self.key_ids: tuple[str, ...] = tuple(self._ciphers)

    @classmethod
    def from_text(cls, text: str) -> KeyRing:
        """Build a ring from comma-separated keys (the form of ``TOKENSTORE_SQL_KEYS``)."""
        return cls(part for part in text.split(",") if part.strip())

    @classmethod
    def coerce(cls, keys: KeyRing | Iterable[str | bytes] | None) -> KeyRing | None:
        """Take a ring, keys to build one from (one key passed bare too), or None."""
        if keys is None or isinstance(keys, KeyRing):
            return keys
        if isinstance(keys, (str, bytes)):  # one key passed bare: a common slip, and harmless
            keys = [keys]
        return cls(keys)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self.key_ids)!r})"

    def __reduce__(self) -> tuple[type[KeyRing], tuple[list[bytes]]]:
        # A pickled storage must keep decrypting in the worker that unpickles it.
        return (KeyRing, ([base64.urlsafe_b64encode(raw) for raw in self._raw_keys],))

    def seal(self, plaintext: str, context: Sequence[str]) -> str:
        """Encrypt ``plaintext`` with the primary key, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary_key_id].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(context)
        )
        return f"{self.primary_key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, stored: str, context: Sequence[str]) -> str:
        """Decrypt a value made by :meth:`seal` with the same ``context``.

        :raises DecryptionError: unknown key, malformed value, or tampering
        """
        kid, _, body = stored.partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"it was encrypted with key {kid}, which is not in the key ring")
        try:
            blob = base64.urlsafe_b64decode(body.encode("ascii"))
            plain = cipher.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(context)
            )
        except (InvalidTag, ValueError, binascii.Error):
            raise DecryptionError(
                f"it does not decrypt with key {kid} (altered, or moved from another row)"
            ) from None
        return plain.decode("utf-8")


def stored_key_id(stored: str) -> str:
    """Return the key id a sealed value names."""
    return stored.partition(":")[0]


def _associated_data(context: Sequence[str]) -> bytes:
    # Length-prefixed parts, so ("ab", "c") and ("a", "bc") bind differently.
    out = bytearray()
    for part in context:
        encoded = part.encode("utf-8")
        out += len(encoded).to_bytes(4, "big") + encoded
    return bytes(out)
