"""API-key authentication: no key or a wrong key is refused with 401 in the OpenAI error envelope."""

from __future__ import annotations

import secrets

import pytest

from harness.conformance.contract import PATHS, Contract
from harness.conformance.endpoint import Api, Reply

__all__ = ["test_missing_key", "test_wrong_key"]


def _assert_unauthorized(reply: Reply, contract: Contract, what: str) -> None:
    assert reply.status == 401, f"{what}: expected 401, got {reply.describe()}"
    problems = contract.errors("error", reply.json())
    assert not problems, f"{what}: the 401 is not in the OpenAI error envelope: {problems}"


@pytest.mark.auth
@pytest.mark.parametrize("endpoint", ["chat", "models"])
def test_missing_key(api: Api, contract: Contract, endpoint: str) -> None:
    """A request without an Authorization header is refused."""
    if endpoint == "models":
        reply = api.get("/models", authorization=None)
    else:
        reply = api.post(PATHS["chat"], contract.body("chat", max_tokens=1), authorization=None)
    _assert_unauthorized(reply, contract, "no API key")


def _altered(key: str) -> str:
    """The key with its last character changed: a server comparing prefixes would let it through."""
    return key[:-1] + ("A" if key[-1:] != "A" else "B")


@pytest.mark.auth
@pytest.mark.parametrize("variant", ["random", "altered", "not_bearer"])
def test_wrong_key(api: Api, contract: Contract, variant: str) -> None:
    """A made-up key, the real key with one character changed, and the real key without `Bearer` are refused."""
    key = api.endpoint.target.api_key
    authorization = {
        "random": f"Bearer esecret_{secrets.token_urlsafe(24)}",
        "altered": f"Bearer {_altered(key)}",
        "not_bearer": key,
    }[variant]
    reply = api.post(PATHS["chat"], contract.body("chat", max_tokens=1), authorization=authorization)
    _assert_unauthorized(reply, contract, f"a {variant.replace('_', ' ')} key")
