"""Before any check or load: is the target there, does the key open it, is the model served, and does it take the
request the run is about to send?

Each failure is one `PreflightError` line that names what failed and how to fix it, raised within the budget
(9 s for the whole preflight), so that a command can stop with exit code 2 before it writes anything — instead of
a run of thousands of failed requests or a suite of failed checks that all say the same thing.

Only the standard library's HTTP client is used: the Locust scenarios call this from gevent processes, where
aiohttp has no place. No proxy from the environment is used, as the load generator's own client uses none.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from harness.client.request import PATHS, ApiKey, ClientConfig, Endpoint, exact_length_body, request_body
from harness.records.record import Record
from harness.records.sse import SSEError, SSEParser
from harness.records.stream import StreamState
from harness.target.endpoint import Target

BUDGET_S = 9.0  # the whole preflight: a command that cannot run says so within 10 s
EXTENSIONS: tuple[str, ...] = tuple(exact_length_body(1))  # the vLLM sampling fields that OpenAI does not define
PROBE_PROMPT = "Say 'Test'."
PROBE_MESSAGES: tuple[Mapping[str, str], ...] = ({"role": "user", "content": PROBE_PROMPT},)
PROBE_TOKENS = 4  # a real request, short enough to be over in a moment on any server

_EXCERPT_BYTES = 300
_READ_BYTES = 64 * 1024


class PreflightError(Exception):
    """One line: what failed, and how to fix it."""


@dataclass(frozen=True, slots=True)
class Found:
    """The target as the preflight found it: `base_url` may have gained `/v1` (see `notices`)."""

    base_url: str
    model: str
    served: tuple[str, ...]
    notices: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # extension fields the target refuses; the run goes without them

    def config(self) -> dict[str, Any]:
        """What a run records of its preflight, so that its report can say it."""
        return {"base_url": self.base_url, "notices": list(self.notices), "refused_fields": list(self.refused)}


@dataclass(frozen=True, slots=True)
class Refusal:
    """The target refused the extension fields (`detail`: its answer) and took the same request without them."""

    fields: tuple[str, ...]
    detail: str

    def describe(self) -> str:
        return f"the target refuses {', '.join(self.fields)} ({self.detail})"

    def error(self) -> PreflightError:
        """The refusal as the failure of a run that must not go without the fields, with the fix."""
        return PreflightError(
            f"{self.describe()}; run again with --no-ignore-eos (output lengths are then the model's own)"
        )


@dataclass(frozen=True, slots=True)
class _Answer:
    url: str
    status: int
    body: bytes


def probe_extra(exact_lengths: bool) -> dict[str, Any] | None:
    """The extension fields the run sends with the probe's length, or None when it sends none."""
    return exact_length_body(PROBE_TOKENS) if exact_lengths else None


def excerpt(body: bytes) -> str:
    """The first 300 bytes of a body, on one line."""
    text = body[:_EXCERPT_BYTES].decode("utf-8", "replace")
    return text.replace("\r", "\\r").replace("\n", "\\n") or "(empty body)"


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _model_ids(answer: _Answer) -> tuple[str, ...]:
    """The ids of an OpenAI model list (`{"object": "list", "data": [{"id": ...}, ...]}`)."""
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise PreflightError(
            f'{answer.url} did not answer with an OpenAI model list ({{"data": [{{"id": ...}}]}}): '
            f"{excerpt(answer.body)}; is the base URL the API's (it usually ends in /v1)?"
        )
    return tuple(str(m["id"]) for m in data)


class Preflight:
    """The preflight of one command. `headers` go with every request, as the run sends them.

    `other_keys` are (name, secret) of further keys the run uses: each must open `/models` too.
    """

    def __init__(
        self,
        api_key: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        other_keys: Sequence[tuple[str, str]] = (),
        budget_s: float = BUDGET_S,
    ) -> None:
        self._key = api_key
        self._headers = tuple(headers)
        self._other_keys = tuple(other_keys)
        self._budget_s = budget_s
        self._deadline = time.monotonic() + budget_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # The target and the model.

    def find(self, base_url: str, model: str | None) -> Found:
        """Reach `{base_url}/models` with the key and find the model (None: the first listed)."""
        base = base_url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PreflightError(f"the base URL must be an http(s) URL such as http://host:port/v1, not {base_url!r}")
        self._resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        notices: list[str] = []
        answer = self._get(f"{base}/models")
        if answer.status == 404:
            base, answer = self._with_v1(base, answer, notices)
        self._judge(answer, "--api-key")
        served = _model_ids(answer)
        chosen = model or (served[0] if served else None)
        if chosen is None:
            raise PreflightError(f"{answer.url} lists no models; name the model under test with --model")
        if chosen not in served:
            notices.append(self._unlisted(base, chosen, served))
        for name, secret in self._other_keys:
            self._judge(self._get(f"{base}/models", secret), name)
        return Found(base, chosen, served, tuple(notices))

    def _with_v1(self, base: str, answer: _Answer, notices: list[str]) -> tuple[str, _Answer]:
        """A 404 at /models: the base URL without its /v1 is the usual mistake, fixed when /v1/models answers."""
        if not base.endswith("/v1"):
            retry = self._get(f"{base}/v1/models")
            if retry.status != 404:
                notices.append(f"{base} answers 404 at /models but {base}/v1/models answers: using {base}/v1")
                return f"{base}/v1", retry
        suggestion = f"{_origin(base)}/v1"
        if base in (_origin(base), suggestion):
            raise PreflightError(
                f"{base} answers 404 at /models; is it an OpenAI-compatible API (whose base URL ends in /v1)?"
            )
        raise PreflightError(f"{base} answers 404 at /models; did you mean {suggestion}?")

    def _unlisted(self, base: str, model: str, served: Sequence[str]) -> str:
        """A model missing from the list is served after all if its own card answers (a conformance problem only)."""
        card = self._get(f"{base}/models/{urllib.parse.quote(model, safe='/')}")
        try:
            ident = orjson.loads(card.body).get("id") if card.status == 200 else None
        except (orjson.JSONDecodeError, AttributeError):
            ident = None
        if ident != model:
            listed = ", ".join(served) if served else "nothing"
            raise PreflightError(f"model {model} is not served; the target lists: {listed} (choose with --model)")
        return f"model {model} is not in {base}/models, but {base}/models/{model} answers: going on"

    def _judge(self, answer: _Answer, key_option: str) -> None:
        if answer.status in (401, 403):
            raise PreflightError(
                f"{answer.url} refused the API key (HTTP {answer.status}): check {key_option}: {excerpt(answer.body)}"
            )
        if answer.status != 200:
            raise PreflightError(f"{answer.url} answered HTTP {answer.status}: {excerpt(answer.body)}")

    # The request the run will send.

    def probe(self, found: Found, endpoint: Endpoint, body: bytes) -> Refusal | None:
        """Send one streamed request as the run sends it; a failure raises, refused extension fields come back.

        A 4xx to a body with extension fields is followed by the same body without them: if that one works, the
        target refuses the fields (and the caller decides whether the run may go without them).
        """
        url = found.base_url + PATHS[endpoint]
        status, raw, record = self._stream(url, body, endpoint)
        if status == 200 and record.error_kind is None:
            return None
        sent = orjson.loads(body)
        fields = tuple(f for f in EXTENSIONS if isinstance(sent, dict) and f in sent)
        if fields and 400 <= status < 500 and status != 429:
            plain = orjson.dumps({k: v for k, v in sent.items() if k not in fields})
            plain_status, _, plain_record = self._stream(url, plain, endpoint)
            if plain_status == 200 and plain_record.error_kind is None:
                return Refusal(fields, f"HTTP {status}: {excerpt(raw)}")
        if status != 200:
            raise PreflightError(f"the test request to {url} failed: HTTP {status}: {excerpt(raw)}")
        raise PreflightError(f"the test request to {url} failed: {record.error_detail}; the body: {excerpt(raw)}")

    def _stream(self, url: str, body: bytes, endpoint: Endpoint) -> tuple[int, bytes, Record]:
        """POST a streamed request and read it to its end; the record says what the run's parser makes of it."""
        record = Record(endpoint=endpoint)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        request = self._request(url, self._key, headers, body)
        try:
            with self._opener.open(request, timeout=self._remaining(url)) as response:
                raw = self._read_stream(url, response, record, endpoint == "chat")
                return int(response.status), raw, record
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, self._read(url, exc), record
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(url, exc) from None

    def _read_stream(self, url: str, response: Any, record: Record, chat: bool) -> bytes:
        parser = SSEParser()
        state = StreamState(record, 0, None, chat)
        seen = bytearray()
        try:
            while data := response.read1(_READ_BYTES):
                if len(seen) < _EXCERPT_BYTES:
                    seen += data[: _EXCERPT_BYTES - len(seen)]
                state.events(parser.feed(data), time.perf_counter_ns())
                self._remaining(url)  # a stream that trickles past the budget is a timeout too
        except SSEError as exc:
            record.fail("protocol_error", str(exc))
        state.finish(parser.close(), time.perf_counter_ns())
        return bytes(seen)

    # HTTP, within the budget.

    def _request(
        self, url: str, key: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> urllib.request.Request:
        all_headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": "identity", **(headers or {})}
        all_headers.update(self._headers)
        return urllib.request.Request(url, data=body, headers=all_headers, method="POST" if body else "GET")

    def _get(self, url: str, key: str | None = None) -> _Answer:
        request = self._request(url, self._key if key is None else key, {"Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self._remaining(url)) as response:
                return _Answer(url, int(response.status), self._read(url, response))
        except urllib.error.HTTPError as exc:
            with exc:
                return _Answer(url, exc.code, self._read(url, exc))
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(url, exc) from None

    def _read(self, url: str, response: Any) -> bytes:
        try:
            return bytes(response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(url, exc) from None

    def _remaining(self, url: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out(url)
        return left

    def _timed_out(self, url: str) -> PreflightError:
        return PreflightError(
            f"{url} did not answer within {self._budget_s:g} s; is the host reachable (address, firewall, VPN)?"
        )

    def _resolve(self, host: str, port: int) -> None:
        """Look the host up in a thread of its own: a stalled DNS server would otherwise outlast every timeout."""
        outcome: list[BaseException | None] = []

        def lookup() -> None:
            try:
                socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                outcome.append(None)
            except OSError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=lookup, name="preflight-dns", daemon=True)
        thread.start()
        thread.join(max(0.0, self._deadline - time.monotonic()))
        if not outcome:
            raise PreflightError(f"cannot resolve {host} within {self._budget_s:g} s (DNS); is the network up?")
        if (error := outcome[0]) is not None:
            raise _dns_error(host, error)

    def _unreachable(self, url: str, exc: BaseException) -> PreflightError:
        """A request that got no HTTP answer, as one line."""
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        where = urllib.parse.urlsplit(url).netloc
        if isinstance(reason, ssl.SSLError):
            return PreflightError(
                f"TLS with {where} failed ({reason}); check its certificate, or use http:// if it does not speak TLS"
            )
        if isinstance(reason, TimeoutError):
            return self._timed_out(url)
        if isinstance(reason, socket.gaierror):
            return _dns_error(where, reason)
        if isinstance(reason, ConnectionRefusedError):
            return PreflightError(f"cannot connect to {where}: connection refused; is the server running on that port?")
        if isinstance(reason, http.client.HTTPException | ConnectionResetError):
            return PreflightError(
                f"{where} closed the connection without an HTTP answer ({type(reason).__name__}); "
                "if it speaks TLS, use https://"
            )
        return PreflightError(f"cannot connect to {where}: {reason}")


def _dns_error(host: str, error: BaseException) -> PreflightError:
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return PreflightError(f"cannot resolve {host} (DNS: {detail}); check the host name in the base URL")


def with_refusal(found: Found, refusal: Refusal) -> Found:
    """The target found, going on without the fields it refused (`harness run`)."""
    notice = f"{refusal.describe()}: the load goes without them, so output lengths are the model's own"
    return replace(found, notices=(*found.notices, notice), refused=refusal.fields)


def check_target(
    base_url: str,
    keys: Sequence[ApiKey],
    model: str | None,
    description: str,
    endpoint: Endpoint,
    exact_lengths: bool,
    headers: Sequence[tuple[str, str]],
    *,
    without_refused: bool = False,
    budget_s: float = BUDGET_S,
) -> Target:
    """The target once its preflight passed: base URL and model as found (None: the first listed), and what was
    found in `preflight`. Prints the preflight's notices.

    Raises `PreflightError` (one line) when the target cannot be run against — also when it refuses the extension
    fields, unless `without_refused` (the run then goes without them: see `refused_fields`).
    """
    first, *others = keys
    check = Preflight(first.secret, headers, other_keys=[(k.name, k.secret) for k in others], budget_s=budget_s)
    found = check.find(base_url, model)
    config = ClientConfig(base_url=found.base_url, model=found.model, endpoint=endpoint)
    body = request_body(config, PROBE_MESSAGES, PROBE_PROMPT, PROBE_TOKENS, probe_extra(exact_lengths))
    if (refusal := check.probe(found, endpoint, body)) is not None:
        if not without_refused:
            raise refusal.error()
        found = with_refusal(found, refusal)
    for notice in found.notices:
        print(f"notice: {notice}", file=sys.stderr)
    return Target(found.base_url, tuple(keys), found.model, description, preflight=found.config())


def first_listed_model(base_url: str, secret: str, timeout_s: float = 30.0) -> str:
    """The first model `{base_url}/models` lists, with no other check (for runs without a preflight)."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return str(orjson.loads(response.read())["data"][0]["id"])
