"""Fuzzing: schemathesis generates requests from the OpenAPI document the server serves, and checks the answers.

The document is built at import, as the server builds the one it serves (its profile, its models), because
schemathesis' lazy `from_fixture` loader does not work with pytest 9.2 (it sets a private node attribute pytest
no longer has); the last test checks that the server serves exactly this document.

Every operation of the document is fuzzed, with valid and invalid data (`mode = all`) and with the API key. The
checks are schemathesis' own — no 5xx, every status and body (JSON, and each event of a stream) described by the
document, invalid data rejected, authentication enforced, undocumented methods refused — plus one of ours in place
of `positive_data_acceptance`: a valid request is served unless its prompt and `max_tokens` overflow the context,
which JSON Schema cannot express. The last test checks that the fuzzer sent at least 2,000 cases over every
operation and that the server is still serving with nothing left in flight; it reads what the fuzz tests counted,
so it runs after them (pytest keeps the file's order).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from schemathesis import Case, CheckContext, Response

from harness.target.launch import DEFAULT_MODEL, LaunchedServer, launch_reference_server
from reference_server.openapi import openapi_document

MIN_CASES = 2000
# Fuzzing draws up to this many cases per operation (operations without parameters stop much earlier).
MAX_EXAMPLES = 380
COMPLETIONS = ("POST /v1/chat/completions", "POST /v1/completions")
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzzed_server() -> Iterator[LaunchedServer]:
    # A small context keeps generated requests cheap: without max_tokens a request may use all of it.
    args = ["--ttft-ms=0", "--itl-ms=0", "--output-len-mean=16", "--max-model-len=128", "--log-level=INFO"]
    with launch_reference_server(extra_args=args, keys=1) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# What a JSON Schema of one request cannot say: relations between its fields (top_logprobs needs logprobs, a named
# tool_choice must name one of the tools) and that a schema the request carries is itself a valid JSON Schema.
CROSS_FIELD_PARAMS = ("top_logprobs", "tool_choice", "response_format", "tools[")


def valid_requests_are_served(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """`positive_data_acceptance`, less the rejections the document cannot rule out: context overflow, and the
    relations between fields above (each answered 400 naming its parameter)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or case.operation.label not in COMPLETIONS:
        return None
    if response.status_code == 400:
        error = response.json()["error"]
        cross_field = str(error["param"] or "").startswith(CROSS_FIELD_PARAMS)
        assert error["code"] == "context_length_exceeded" or cross_field, (
            f"a schema-valid request was refused: {response.text[:300]}"
        )
    else:
        assert response.status_code == 200, f"a schema-valid request got {response.status_code}: {response.text[:300]}"
    return True


DOCUMENT = openapi_document("anyscale", [DEFAULT_MODEL])
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
def test_the_server_answers_every_generated_request_as_its_document_says(
    case: Case, fuzzed_server: LaunchedServer, http: requests.Session
) -> None:
    CASES[case.operation.label] += 1
    case.call_and_validate(
        base_url=fuzzed_server.target.root_url,
        session=http,
        headers={"Authorization": f"Bearer {fuzzed_server.target.api_key}"},
        additional_checks=[valid_requests_are_served],
    )


def test_the_fuzzer_covered_every_operation_and_the_server_is_still_serving(
    fuzzed_server: LaunchedServer, http: requests.Session
) -> None:
    root = fuzzed_server.target.root_url
    assert http.get(f"{root}/openapi.json").json() == DOCUMENT
    operations = {f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item}
    assert set(CASES) == operations, "run the whole module: this test counts what the fuzz tests sent"
    assert sum(CASES.values()) >= MIN_CASES, CASES
    assert all(CASES[label] >= MAX_EXAMPLES for label in COMPLETIONS), CASES
    assert fuzzed_server.process.poll() is None
    assert http.get(f"{root}/health").status_code == 200
    models = http.get(f"{root}/v1/models", headers={"Authorization": f"Bearer {fuzzed_server.target.api_key}"})
    assert models.status_code == 200
    metrics = http.get(f"{root}/metrics").text
    in_flight = [float(v) for v in re.findall(r"^llm_requests_in_flight\{[^}]*\} (\S+)$", metrics, re.MULTILINE)]
    assert in_flight and not any(in_flight)
    assert re.search(r"^llm_engine_running_sequences 0\.0$", metrics, re.MULTILINE)
    assert re.search(r"^llm_engine_waiting_sequences 0\.0$", metrics, re.MULTILINE)
    statuses = re.findall(r'^llm_requests_total\{endpoint="[^"]*",status="(\d+)"\}', metrics, re.MULTILINE)
    assert statuses and all(int(s) < 500 for s in statuses), statuses
    log = "".join(fuzzed_server.log_lines)
    assert "Traceback" not in log and "unhandled error" not in log
