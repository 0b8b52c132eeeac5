"""`/v1/models` and `/v1/models/{id}`."""

from __future__ import annotations

import pytest

from harness.conformance.contract import Contract
from harness.conformance.endpoint import Api

__all__ = ["test_model_list", "test_model_retrieve"]


@pytest.mark.shapes
def test_model_list(api: Api, contract: Contract) -> None:
    """The model list validates against the profile's schema and lists the model under test."""
    reply = api.get("/models")
    assert reply.status == 200, reply.describe()
    body = reply.json()
    assert not (problems := contract.errors("model_list", body)), f"the model list breaks the schema: {problems}"
    listed = [m["id"] for m in body["data"]]
    assert contract.model in listed, f"the model under test {contract.model!r} is not listed: {listed}"


@pytest.mark.shapes
def test_model_retrieve(api: Api, contract: Contract) -> None:
    """`/v1/models/{id}` describes the model under test."""
    reply = api.get(f"/models/{contract.model}")
    assert reply.status == 200, reply.describe()
    body = reply.json()
    assert not (problems := contract.errors("model", body)), f"the model breaks the schema: {problems}"
    assert body["id"] == contract.model, f"asked for {contract.model!r}, got the card of {body['id']!r}"
