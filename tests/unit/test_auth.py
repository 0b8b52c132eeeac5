from __future__ import annotations

import hashlib
import hmac

import pytest

from reference_server.auth import KeyRing
from reference_server.config import ApiKey, digest
from reference_server.errors import APIError

RING = KeyRing([ApiKey("a", digest("esecret_a_key_1234")), ApiKey("b", digest("esecret_b_key_5678"), 3)])


def test_bearer_key_is_found_by_digest() -> None:
    assert RING.authenticate("Bearer esecret_a_key_1234").name == "a"
    assert RING.authenticate("bearer esecret_b_key_5678").concurrency_limit == 3


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer esecret_wrong", "Basic esecret_a_key_1234", "esecret_a_key_1234"]
)
def test_missing_malformed_or_wrong_keys_are_401_without_echoing_the_key(header: str | None) -> None:
    with pytest.raises(APIError) as caught:
        RING.authenticate(header)
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    assert "key_1234" not in caught.value.message and "wrong" not in caught.value.message


def test_only_digests_are_kept() -> None:
    assert all(len(k.sha256) == 32 for k in RING.keys)


def test_an_empty_keyring_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        KeyRing([])


def test_the_comparison_is_constant_time_over_digests_never_over_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("reference_server.auth.hmac.compare_digest", spy)
    assert RING.authenticate("Bearer esecret_a_key_1234").name == "a"
    assert compared == [(digest("esecret_a_key_1234"), hashlib.sha256(b"esecret_a_key_1234").digest())]
    compared.clear()
    with pytest.raises(APIError):
        RING.authenticate("Bearer esecret_a_key_1235")
    # A wrong key is not found by its digest: nothing secret-dependent is compared byte by byte.
    assert all(len(a) == len(b) == 32 for a, b in compared)


def test_the_keyring_holds_no_secret() -> None:
    held = repr(vars(RING))
    assert "esecret_a_key_1234" not in held and b"esecret_a_key_1234".hex() not in held
    assert {k.sha256 for k in RING.keys} == {digest("esecret_a_key_1234"), digest("esecret_b_key_5678")}
