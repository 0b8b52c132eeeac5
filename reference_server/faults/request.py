"""The faults of what a server reads: keys it lets in, arguments it drops or refuses, prompts it changes, errors it
answers wrongly."""

from __future__ import annotations

import copy
from typing import Any

import orjson

import schemas
from reference_server.auth import KeyRing
from reference_server.config import ApiKey
from reference_server.engines.base import StructuredOutput
from reference_server.errors import APIError, bad_request
from reference_server.faults.catalog import Fault
from reference_server.protocol import Kind

_BODY_FAULTS = frozenset(
    {
        Fault.IGNORE_MAX_TOKENS,
        Fault.IGNORE_STOP,
        Fault.IGNORE_MAX_COMPLETION_TOKENS,
        Fault.FIRST_STOP_ONLY,
        Fault.SEED_IGNORED,
        Fault.TOOLS_DESPITE_NONE,
        Fault.REJECT_FEATURES,
        Fault.STRICT_ARGS,
        Fault.DROP_ASSISTANT,
    }
)


def authenticate(fault: Fault, keyring: KeyRing, authorization: str | None) -> ApiKey:
    """The key of a request; `allow_missing_key` and `allow_wrong_key` let in what the key ring refuses."""
    try:
        return keyring.authenticate(authorization)
    except APIError:
        if fault is Fault.ALLOW_MISSING_KEY and not authorization:
            return keyring.keys[0]
        if fault is Fault.ALLOW_WRONG_KEY and (authorization or "").lower().startswith("bearer "):
            return keyring.keys[0]
        raise


def wrong_error(fault: Fault, error: APIError) -> None:
    """An error of the completion endpoints, changed in place to be answered wrongly as the fault says."""
    if fault is Fault.UNKNOWN_MODEL_400 and error.status == 404:
        error.status = 400
    elif fault is Fault.STATUS_422 and error.status == 400:
        error.status = 422
    elif fault is Fault.NO_RETRY_AFTER and error.status == 429:
        error.headers = {k: v for k, v in error.headers.items() if k.lower() != "retry-after"}


def request_body(fault: Fault, kind: Kind, raw: bytes) -> bytes:
    """The request as a server with this fault reads it: arguments refused, dropped or changed."""
    if fault not in _BODY_FAULTS:
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # the parser says what is wrong with it
    if fault is Fault.STRICT_ARGS:
        _refuse_unknown(kind, data)
        return raw
    if not isinstance(data, dict):
        return raw
    if fault is Fault.REJECT_FEATURES:
        _refuse_features(data)
        return raw
    _rewrite(fault, kind, data)
    return orjson.dumps(data)


def _refuse_unknown(kind: Kind, data: Any) -> None:
    """`strict_args`: refuse what the spec says is ignored."""
    name = "chat_completion_request" if kind == "chat" else "completion_request"
    known = schemas.load(f"requests/{name}.json")["properties"]
    unknown = sorted(k for k in data if k not in known) if isinstance(data, dict) else []
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])


def _refuse_features(data: dict[str, Any]) -> None:
    """`reject_features`: a server that offers nothing beyond plain text."""
    offered = ("tools", "logprobs", "top_logprobs")
    refused = [k for k in offered if data.get(k) not in (None, False, [])]
    if (data.get("n") or 1) > 1:
        refused.append("n")
    if (data.get("response_format") or {}).get("type", "text") != "text":
        refused.append("response_format")
    if refused:
        raise bad_request(f"This server does not support {', '.join(refused)}.", param=refused[0])


def _rewrite(fault: Fault, kind: Kind, data: dict[str, Any]) -> None:
    """The arguments a faulty server drops or changes, in place."""
    if fault is Fault.IGNORE_MAX_COMPLETION_TOKENS:
        data.pop("max_completion_tokens", None)
    elif fault is Fault.IGNORE_MAX_TOKENS and isinstance(data.get("max_tokens"), int) and data["max_tokens"] >= 1:
        if kind == "completion" or data.get("max_completion_tokens") is None:
            data["max_tokens"] += 1
    elif fault is Fault.IGNORE_STOP and (isinstance(data.get("stop"), str) or len(data.get("stop") or ()) == 1):
        data.pop("stop")
    elif fault is Fault.FIRST_STOP_ONLY and isinstance(data.get("stop"), list):
        data["stop"] = data["stop"][:1]
    elif fault is Fault.SEED_IGNORED:
        data.pop("seed", None)
    elif fault is Fault.TOOLS_DESPITE_NONE and data.get("tool_choice") == "none" and data.get("tools"):
        data["tool_choice"] = "required"
    elif fault is Fault.DROP_ASSISTANT and kind == "chat" and isinstance(data.get("messages"), list):
        data["messages"] = [m for m in data["messages"] if not (isinstance(m, dict) and m.get("role") == "assistant")]


def completion_prompt(fault: Fault, model: str, prompt: str) -> str:
    """A completion's prompt, which should be used verbatim, with a BOS put in front as the fault says."""
    if fault is Fault.TEMPLATE_COMPLETION:
        return schemas.SPECIAL_TOKENS["llama3"]["bos_token"] + prompt
    if fault is Fault.BOS_IF_MISSING:
        bos = schemas.SPECIAL_TOKENS[schemas.family_for_model(model) or "llama3"]["bos_token"]
        return prompt if prompt.startswith(bos) else bos + prompt
    return prompt


def structured(fault: Fault, output: StructuredOutput | None) -> StructuredOutput | None:
    """`schema_violation`: guide a json_schema output by the schema less its first required property."""
    if fault is not Fault.SCHEMA_VIOLATION or output is None or output.schema is None:
        return output
    schema = copy.deepcopy(dict(output.schema))
    required = list(schema.get("required") or ())
    if required:
        schema["required"] = required[1:]
        schema.get("properties", {}).pop(required[0], None)
        schema["additionalProperties"] = False
    return StructuredOutput(schema)
