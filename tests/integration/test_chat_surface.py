"""The chat surface beyond plain text, through real HTTP on the simulator: output limits, stop lists, n, logprobs,
structured outputs, tools and reasoning (issue 17)."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import jsonschema
import openai
import orjson
import pytest

from reference_server.config import SimOptions
from reference_server.server import RunningServer
from tests.integration.conftest import KEY, MODEL, ServerFactory, auth

USER = [{"role": "user", "content": "Tell me about the weather."}]


async def post(
    http: aiohttp.ClientSession, server: RunningServer, path: str, body: dict[str, Any], status: int = 200
) -> Any:
    async with http.post(f"{server.base_url}/v1/{path}", json=body, headers=auth()) as r:
        assert r.status == status, await r.text()
        return await r.json()


@pytest.mark.parametrize("limits", [{"max_completion_tokens": 5}, {"max_tokens": 9, "max_completion_tokens": 5}])
async def test_max_completion_tokens_limits_the_output(
    server: RunningServer, http: aiohttp.ClientSession, limits: dict[str, int]
) -> None:
    body = await post(http, server, "chat/completions", {"model": MODEL, "messages": USER, "min_tokens": 50, **limits})
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"


async def stream_chunks(
    http: aiohttp.ClientSession,
    server: RunningServer,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    async with http.post(
        f"{server.base_url}/v1/{path}", json={**body, "stream": True}, headers={**auth(), **(headers or {})}
    ) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    return [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]


WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]},
    },
}
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": USER, "temperature": 0, "max_tokens": 200, **fields}


async def test_the_earliest_stop_of_a_list_cuts_the_text(server: RunningServer, http: aiohttp.ClientSession) -> None:
    full = (
        await post(
            http,
            server,
            "completions",
            {"model": MODEL, "prompt": "p", "temperature": 0, "max_tokens": 60, "ignore_eos": True},
        )
    )["choices"][0]["text"]
    words = full.split()
    early, late = words[10], words[30]
    assert full.find(early) < full.find(late)
    stopped = await post(
        http,
        server,
        "completions",
        {
            "model": MODEL,
            "prompt": "p",
            "temperature": 0,
            "max_tokens": 60,
            "ignore_eos": True,
            "stop": ["zzz", late, early],
        },
    )
    choice = stopped["choices"][0]
    assert choice["text"] == full[: full.find(early)] and choice["finish_reason"] == "stop"


@pytest.mark.parametrize("path", ["chat/completions", "completions"])
async def test_n_choices_each_with_its_index_streamed_and_not(
    server: RunningServer, http: aiohttp.ClientSession, path: str
) -> None:
    base = chat(n=3, max_tokens=6, ignore_eos=True, temperature=1, seed=5)
    if path == "completions":
        base = {"model": MODEL, "prompt": "p", "n": 3, "max_tokens": 6, "ignore_eos": True, "temperature": 1, "seed": 5}
    body = await post(http, server, path, base)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 18
    texts = {(c["message"]["content"] if path == "chat/completions" else c["text"]) for c in body["choices"]}
    assert len(texts) == 3  # seeds s, s+1, s+2
    chunks = await stream_chunks(http, server, path, base)
    finishes = [(ch["index"], ch["finish_reason"]) for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(finishes) == [(0, "length"), (1, "length"), (2, "length")]
    streamed = {i: "" for i in range(3)}
    for c in chunks:
        for ch in c["choices"]:
            streamed[ch["index"]] += ch["delta"].get("content") or "" if path == "chat/completions" else ch["text"]
    assert set(streamed.values()) == texts


async def test_chat_logprobs_one_entry_per_token_with_the_alternatives_asked(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    body = await post(
        http, server, "chat/completions", chat(max_tokens=8, ignore_eos=True, logprobs=True, top_logprobs=3)
    )
    choice = body["choices"][0]
    entries = choice["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"] == 8
    assert "".join(e["token"] for e in entries) == choice["message"]["content"]
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3 and e["bytes"] == list(e["token"].encode())
    chunks = await stream_chunks(
        http, server, "chat/completions", chat(max_tokens=8, ignore_eos=True, logprobs=True, top_logprobs=3)
    )
    streamed = [e for c in chunks for ch in c["choices"] for e in (ch.get("logprobs") or {}).get("content") or ()]
    assert streamed == entries


async def test_completion_logprobs_in_the_anyscale_shape(server: RunningServer, http: aiohttp.ClientSession) -> None:
    request = {"model": MODEL, "prompt": "p", "max_tokens": 6, "ignore_eos": True, "logprobs": 2, "temperature": 0}
    choice = (await post(http, server, "completions", request))["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == 6
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"][0] == 0 and all(len(top) == 2 for top in lp["top_logprobs"])


async def test_json_mode_and_json_schema_outputs(server: RunningServer, http: aiohttp.ClientSession) -> None:
    body = await post(http, server, "chat/completions", chat(response_format={"type": "json_object"}))
    assert isinstance(orjson.loads(body["choices"][0]["message"]["content"]), dict)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in range(5):
        body = await post(http, server, "chat/completions", chat(response_format=fmt, temperature=1, seed=seed))
        jsonschema.validate(orjson.loads(body["choices"][0]["message"]["content"]), PERSON)
    bad = {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nonsense"}}}
    error = await post(http, server, "chat/completions", chat(response_format=bad), status=400)
    assert error["error"]["param"] == "response_format"


async def test_a_named_tool_is_called_and_streamed_as_openai_streams_it(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    request = chat(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    body = await post(http, server, "chat/completions", request)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"]) and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(orjson.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])
    chunks = await stream_chunks(http, server, "chat/completions", request)
    deltas = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls") or ()]
    first, *rest = deltas
    assert first["id"].startswith("call_") and first["function"] == {"name": "get_weather", "arguments": ""}
    assert rest and all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    assert "".join(d["function"]["arguments"] for d in rest) == call["function"]["arguments"]
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["tool_calls"]


async def test_required_calls_one_of_the_tools_and_none_calls_none(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for seed in range(4):
        body = await post(
            http,
            server,
            "chat/completions",
            chat(tools=[WEATHER, TIME], tool_choice="required", temperature=1, seed=seed),
        )
        (call,) = body["choices"][0]["message"]["tool_calls"]
        tool = {"get_weather": WEATHER, "get_time": TIME}[call["function"]["name"]]
        jsonschema.validate(orjson.loads(call["function"]["arguments"]), tool["function"]["parameters"])
        chunks = await stream_chunks(
            http,
            server,
            "chat/completions",
            chat(tools=[WEATHER, TIME], tool_choice="required", temperature=1, seed=seed),
        )
        fragments = [
            d["function"].get("arguments", "")
            for c in chunks
            for ch in c["choices"]
            for d in ch["delta"].get("tool_calls") or ()
        ]
        assert "".join(fragments) == call["function"]["arguments"]
    none = await post(http, server, "chat/completions", chat(tools=[WEATHER], tool_choice="none"))
    assert "tool_calls" not in none["choices"][0]["message"] and none["choices"][0]["finish_reason"] in (
        "stop",
        "length",
    )


async def test_auto_calls_the_tool_the_user_names(server: RunningServer, http: aiohttp.ClientSession) -> None:
    asked = [{"role": "user", "content": "Please use get_weather for Paris."}]
    body = await post(http, server, "chat/completions", chat(messages=asked, tools=[WEATHER, TIME]))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]
    chunks = await stream_chunks(http, server, "chat/completions", chat(messages=asked, tools=[WEATHER, TIME]))
    args = "".join(
        d["function"].get("arguments", "")
        for c in chunks
        for ch in c["choices"]
        for d in ch["delta"].get("tool_calls") or ()
    )
    assert args == choice["message"]["tool_calls"][0]["function"]["arguments"]
    plain = await post(http, server, "chat/completions", chat(tools=[WEATHER, TIME]))
    assert "tool_calls" not in plain["choices"][0]["message"]
    # The call's answer goes back as a tool message; the conversation goes on in text.
    followed = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": choice["message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": choice["message"]["tool_calls"][0]["id"], "content": '{"sky": "clear"}'},
    ]
    after = await post(http, server, "chat/completions", chat(messages=followed, tools=[WEATHER, TIME]))
    assert isinstance(after["choices"][0]["message"]["content"], str)


async def test_tool_choice_errors_name_the_parameter(server: RunningServer, http: aiohttp.ClientSession) -> None:
    unknown = chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert (await post(http, server, "chat/completions", unknown, status=400))["error"]["param"] == "tool_choice"
    assert (await post(http, server, "chat/completions", chat(tool_choice="required"), status=400))["error"][
        "param"
    ] == "tool_choice"
    assert (await post(http, server, "chat/completions", chat(top_logprobs=2), status=400))["error"][
        "param"
    ] == "top_logprobs"


async def test_reasoning_comes_apart_from_the_answer(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(sim=SimOptions(ttft_ms=1, itl_ms=1, reasoning_tokens=5)) as server:
        body = await post(http, server, "chat/completions", chat(max_tokens=12, ignore_eos=True))
        chunks = await stream_chunks(http, server, "chat/completions", chat(max_tokens=12, ignore_eos=True))
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]
    assert body["usage"]["completion_tokens"] == 12
    kinds = [
        k
        for c in chunks
        for ch in c["choices"]
        for k in ch["delta"]
        if k in ("reasoning_content", "content") and ch["delta"][k]
    ]
    assert kinds[:5] == ["reasoning_content"] * 5 and set(kinds[5:]) == {"content"}


async def test_the_same_seed_gives_the_same_text(server: RunningServer, http: aiohttp.ClientSession) -> None:
    texts = [
        (await post(http, server, "chat/completions", chat(temperature=1, seed=11)))["choices"][0]["message"]["content"]
        for _ in range(2)
    ]
    assert texts[0] == texts[1]


async def test_the_openai_sdk_reads_tool_calls_streamed_and_not(server: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=KEY)
    choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    messages: Any = USER
    tool_list: Any = [WEATHER]
    done = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=tool_list, tool_choice=choice, max_tokens=100
    )
    calls = done.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function" and calls[0].function.name == "get_weather"
    arguments = ""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=tool_list,
        tool_choice=choice,
        max_tokens=100,
        stream=True,
        temperature=0,
    )
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            arguments += (delta.function.arguments if delta.function else None) or ""
    jsonschema.validate(orjson.loads(arguments), WEATHER["function"]["parameters"])
    await client.close()


def _named(**fields: Any) -> dict[str, Any]:
    return chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}, **fields)


def _args(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])


def _loads_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


async def test_each_feature_fault_breaks_what_it_says(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """Every fault of the chat surface, against the same request without it (the conformance checks rely on them)."""
    schema_fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    async with server_factory(enable_faults=True) as server:

        async def both(body: dict[str, Any], fault: str) -> tuple[Any, Any]:
            good = await post(http, server, "chat/completions", body)
            async with http.post(
                f"{server.base_url}/v1/chat/completions", json=body, headers={**auth(), "x-fault": fault}
            ) as r:
                return good, await r.json()

        good, bad = await both(
            chat(max_completion_tokens=5, ignore_eos=True, max_tokens=None), "ignore_max_completion_tokens"
        )
        assert good["usage"]["completion_tokens"] == 5 and bad["usage"]["completion_tokens"] > 5

        full = (await post(http, server, "chat/completions", chat(max_tokens=40, ignore_eos=True)))["choices"][0][
            "message"
        ]["content"]
        words = full.split()
        good, bad = await both(chat(max_tokens=40, ignore_eos=True, stop=["zzz", words[5]]), "first_stop_only")
        assert good["choices"][0]["message"]["content"] == full[: full.find(words[5])]
        assert bad["choices"][0]["message"]["content"] == full

        good, bad = await both(chat(n=2, max_tokens=4), "same_choice_index")
        assert [c["index"] for c in good["choices"]] == [0, 1] and [c["index"] for c in bad["choices"]] == [0, 0]

        good, bad = await both(chat(max_tokens=4, logprobs=True, top_logprobs=2), "short_top_logprobs")
        assert {len(e["top_logprobs"]) for e in good["choices"][0]["logprobs"]["content"]} == {2}
        assert {len(e["top_logprobs"]) for e in bad["choices"][0]["logprobs"]["content"]} == {1}

        good, bad = await both(chat(response_format={"type": "json_object"}), "json_trailing_text")
        assert _loads_or_none(good["choices"][0]["message"]["content"]) is not None
        assert _loads_or_none(bad["choices"][0]["message"]["content"]) is None

        good, bad = await both(chat(response_format=schema_fmt), "schema_violation")
        jsonschema.validate(orjson.loads(good["choices"][0]["message"]["content"]), PERSON)
        assert "name" not in orjson.loads(bad["choices"][0]["message"]["content"])

        good, bad = await both(_named(), "tool_args_not_json")
        assert _loads_or_none(_args(good)) is not None and _loads_or_none(_args(bad)) is None

        good, bad = await both(_named(), "repeated_tool_id")
        again = await post(http, server, "chat/completions", _named())
        assert (
            _args(good)
            and good["choices"][0]["message"]["tool_calls"][0]["id"]
            != again["choices"][0]["message"]["tool_calls"][0]["id"]
        )
        assert bad["choices"][0]["message"]["tool_calls"][0]["id"] == "call_" + "0" * 24

        good, bad = await both(_named(), "tool_finish_stop")
        assert (good["choices"][0]["finish_reason"], bad["choices"][0]["finish_reason"]) == ("tool_calls", "stop")

        good, bad = await both(chat(tools=[WEATHER], tool_choice="none"), "tools_despite_none")
        assert "tool_calls" not in good["choices"][0]["message"] and bad["choices"][0]["message"]["tool_calls"]

        texts = {
            (await both(chat(temperature=1, seed=3), "seed_ignored"))[1]["choices"][0]["message"]["content"]
            for _ in range(2)
        }
        assert len(texts) == 2

        good, bad = await both(_named(), "reject_features")
        assert _args(good) and bad["error"]["param"] == "tools"

        request = _named(stream=True)
        clean = await stream_chunks(http, server, "chat/completions", request)
        drifted = await stream_chunks(http, server, "chat/completions", request, {"x-fault": "tool_stream_drift"})

        def fragments(chunks: list[dict[str, Any]]) -> list[str]:
            return [
                d["function"]["arguments"]
                for c in chunks
                for ch in c["choices"]
                for d in ch["delta"].get("tool_calls") or ()
                if "id" not in d
            ]

        assert len(fragments(drifted)) == 2 * len(fragments(clean))
