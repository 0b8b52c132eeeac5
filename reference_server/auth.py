"""Bearer-key authentication in constant time with respect to the secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from reference_server.config import ApiKey
from reference_server.errors import APIError

_BEARER = "bearer "


class KeyRing:
    """Looks a presented key up by its SHA-256 digest.

    Only digests are held. The lookup is keyed by the digest of what the client sent, so its timing depends
    on a hash the client cannot steer, and the final equality is `hmac.compare_digest`.
    """

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_digest = {k.sha256: k for k in keys}
        if not self._by_digest:
            raise ValueError("at least one API key is required")

    @property
    def keys(self) -> list[ApiKey]:
        return list(self._by_digest.values())

    def authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise _unauthorized("You didn't provide an API key. Pass it as 'Authorization: Bearer esecret_…'.")
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise _unauthorized("The Authorization header must use the Bearer scheme.")
        presented = hashlib.sha256(authorization[len(_BEARER) :].strip().encode()).digest()
        key = self._by_digest.get(presented)
        if key is None or not hmac.compare_digest(key.sha256, presented):
            raise _unauthorized("Incorrect API key provided.")
        return key


def _unauthorized(message: str) -> APIError:
    return APIError(
        401,
        message,
        type="authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
