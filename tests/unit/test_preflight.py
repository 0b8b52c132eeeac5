"""The preflight's decisions, against a scripted server (the standard library's, on a thread): which answers are
accepted, which notices and failures they give. The commands' messages end to end: tests/integration."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from harness.target.preflight import Found, Preflight, PreflightError, with_refusal

KEY = "esecret_unit"
Script = dict[str, Callable[[bytes, str], tuple[int, bytes]]]  # path -> (request body, authorization) -> answer


def listed(*ids: str) -> bytes:
    return orjson.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


STREAM = sse(
    orjson.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "length"}]}),
    orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
    b"[DONE]",
)


@pytest.fixture
def server() -> Iterator[tuple[str, Script, list[dict[str, Any]]]]:
    script: Script = {}
    bodies: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if body:
                bodies.append(orjson.loads(body))
            handler = script.get(self.path)
            status, raw = handler(body, self.headers.get("Authorization", "")) if handler else (404, b"not found")
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script, bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


def models(*ids: str) -> Callable[[bytes, str], tuple[int, bytes]]:
    return lambda _body, auth: (200, listed(*ids)) if auth == f"Bearer {KEY}" else (401, b'{"error": "no"}')


def test_a_model_missing_from_the_list_goes_on_if_its_own_card_answers(server: Any) -> None:
    root, script, _ = server
    script["/v1/models"] = models("a/one")
    script["/v1/models/b/two"] = lambda _b, _a: (200, b'{"id": "b/two", "object": "model"}')
    found = Preflight(KEY).find(f"{root}/v1", "b/two")
    assert found.model == "b/two" and found.served == ("a/one",)
    assert found.notices == (f"model b/two is not in {root}/v1/models, but {root}/v1/models/b/two answers: going on",)
    with pytest.raises(PreflightError, match=r"^model c/three is not served; the target lists: a/one \(choose"):
        Preflight(KEY).find(f"{root}/v1", "c/three")


def test_every_key_must_open_the_models(server: Any) -> None:
    root, script, _ = server
    script["/v1/models"] = models("a/one")
    with pytest.raises(PreflightError, match=r"/v1/models refused the API key \(HTTP 401\): check key-2: "):
        Preflight(KEY, other_keys=[("key-2", "esecret_other")]).find(f"{root}/v1", None)


def test_a_404_at_v1_models_with_a_401_there_is_the_keys_fault_at_v1(server: Any) -> None:
    root, script, _ = server
    script["/v1/models"] = models("a/one")
    with pytest.raises(PreflightError, match=rf"^{root}/v1/models refused the API key \(HTTP 401\)"):
        Preflight("esecret_wrong").find(root, None)


def test_a_server_that_never_answers_times_out_within_the_budget() -> None:
    with socket.socket() as silent:  # connections complete in the backlog; nothing ever reads them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(PreflightError, match=rf"^http://127.0.0.1:{port}/v1/models did not answer within 0.5 s"):
            Preflight(KEY, budget_s=0.5).find(f"http://127.0.0.1:{port}/v1", None)


def test_not_an_http_url_is_refused_before_any_request() -> None:
    with pytest.raises(PreflightError, match="must be an http\\(s\\) URL such as http://host:port/v1, not 'host:8000'"):
        Preflight(KEY).find("host:8000", None)


def found(root: str) -> Found:
    return Found(f"{root}/v1", "a/one", ("a/one",))


BODY = orjson.dumps({"model": "a/one", "stream": True, "max_tokens": 4, "ignore_eos": True, "min_tokens": 4})


def test_refused_extension_fields_come_back_when_the_request_works_without_them(server: Any) -> None:
    root, script, bodies = server
    script["/v1/chat/completions"] = lambda body, _a: (422, b'{"detail": "extra"}') if b"ignore_eos" in body else (
        200, STREAM)  # fmt: skip
    refusal = Preflight(KEY).probe(found(root), "chat", BODY)
    assert refusal is not None and refusal.fields == ("ignore_eos", "min_tokens")
    assert refusal.detail == 'HTTP 422: {"detail": "extra"}'
    assert [sorted(b) for b in bodies] == [sorted(orjson.loads(BODY)), ["max_tokens", "model", "stream"]]
    went_on = with_refusal(found(root), refusal)
    assert went_on.config()["refused_fields"] == ["ignore_eos", "min_tokens"]
    assert went_on.notices[-1].endswith(": the load goes without them, so output lengths are the model's own")
    assert "--no-ignore-eos" in str(refusal.error())


@pytest.mark.parametrize(
    ("status", "plain_status", "expected"),
    [
        (429, 200, "failed: HTTP 429: busy"),  # the limit, not the fields: never retried without them
        (400, 400, "failed: HTTP 400: busy"),  # refused with and without them: the fields are not the reason
        (500, 200, "failed: HTTP 500: busy"),
    ],
)
def test_other_failures_of_the_test_request_stop_with_status_and_body(
    server: Any, status: int, plain_status: int, expected: str
) -> None:
    root, script, _ = server
    script["/v1/chat/completions"] = lambda body, _a: (status if b"ignore_eos" in body else plain_status, b"busy")
    with pytest.raises(PreflightError, match=f"^the test request to {root}/v1/chat/completions {expected}$"):
        Preflight(KEY).probe(found(root), "chat", BODY)


def test_a_working_stream_passes_and_one_without_done_does_not(server: Any) -> None:
    root, script, _ = server
    script["/v1/chat/completions"] = lambda _b, _a: (200, STREAM)
    assert Preflight(KEY).probe(found(root), "chat", BODY) is None
    script["/v1/chat/completions"] = lambda _b, _a: (200, STREAM.removesuffix(b"data: [DONE]\n\n"))
    with pytest.raises(PreflightError, match="failed: the stream ended without data: \\[DONE\\]; the body: data: "):
        Preflight(KEY).probe(found(root), "chat", BODY)
