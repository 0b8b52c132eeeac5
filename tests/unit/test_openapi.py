from __future__ import annotations

import json
from importlib import resources
from typing import Any

from reference_server.openapi import openapi_document


def test_committed_document_is_the_generated_one() -> None:
    committed = json.loads(resources.files("schemas").joinpath("openapi.json").read_text())
    assert committed == openapi_document(), "regenerate: python -m reference_server.openapi > schemas/openapi.json"


def test_every_reference_resolves_and_every_operation_documents_its_errors() -> None:
    doc = openapi_document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    names = set(doc["components"]["schemas"])
    assert refs and all(r.removeprefix("#/components/schemas/") in names for r in refs)
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert {"200", "400", "401", "404", "413", "429"} <= set(doc["paths"][path]["post"]["responses"])
