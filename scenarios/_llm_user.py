"""The streaming LLM user every scenario is made of: Locust's FastHttpUser, reading the SSE body as it arrives.

Each request fires Locust request events under its name (`chat` by default): one for the whole request (response
time = until `data: [DONE]`, size = output tokens from `usage`) and one named `chat TTFT` as soon as the first
token arrives, so the web UI shows both. A 429 is reported as `chat 429`, a success of its own kind rather than a
failure; the user then waits what Retry-After asks (as a well-behaved client does) before its next request.

Timing: the body is read straight from the connection (geventhttpclient's response) one `recv` at a time, and each
read is stamped with `time.perf_counter_ns()` when `recv` returns, before it is parsed. Its events go through the
same `harness.records.sse` parser and `harness.records.stream.StreamState` as `harness bench`, so a Locust record means
what a bench record means. (`iter_content(n)` would wait until n bytes had come and stamp late.)
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import gevent
from _llm_http import HTTPParseError, body_buffer, connection, socket_response
from _llm_run import Session, refuse, session_of
from gevent import GreenletExit
from geventhttpclient.response import HTTPConnectionClosed, HTTPSocketResponse
from geventhttpclient.useragent import ConnectionError as GeventHttpConnectionError
from locust import constant
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from harness.client.request import Endpoint
from harness.records.record import ErrorKind, Record
from harness.records.sse import SSEError, SSEParser
from harness.records.stream import StreamState, record_refusal

_RECV_BYTES = 64 * 1024
_MAX_RETRY_WAIT_S = 30.0
_CANCELLED = "the user was stopped while this request was in flight"


class LLMError(Exception):
    """What Locust shows in its failures table; the record holds the details."""


def error_kind(exc: BaseException) -> ErrorKind:
    exc = getattr(exc, "original", None) or exc  # geventhttpclient wraps the last error when giving up
    if isinstance(exc, gevent.Timeout | socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, HTTPConnectionClosed | ConnectionResetError | BrokenPipeError):
        return "disconnect"
    if isinstance(exc, HTTPParseError):
        return "protocol_error"  # not HTTP a client can follow
    if isinstance(exc, OSError | GeventHttpConnectionError):
        return "connect"
    return "client_error"


class LLMUser(FastHttpUser):
    """Sends streamed requests in a closed loop; scenarios add tasks that call `stream`."""

    abstract = True
    wait_time = constant(0)
    # Seconds without a byte before a read fails; the whole request has --request-timeout.
    network_timeout = 600.0
    connection_timeout = 30.0

    @property
    def max_tokens(self) -> int:
        """`--max-tokens` of the running test."""
        session = session_of(self.environment)
        return session.options.max_tokens if session is not None else 128

    def stream(self, endpoint: Endpoint = "chat", *, name: str | None = None, max_tokens: int | None = None) -> Record:
        """Send one streamed request, report it to Locust and write its record; returns the record."""
        session = session_of(self.environment)
        if session is None:
            raise StopUser  # the test could not start here; the reason is in the log
        label = name or endpoint
        try:
            record, body = session.next_request(endpoint, max_tokens)
        except ValueError as exc:  # e.g. conversations for completions, and no template family to format them
            refuse(self.environment, f"{exc} (see --template-family)")
            raise StopUser from exc
        record.scheduled_ns = time.perf_counter_ns() - session.origin_ns
        try:
            with gevent.Timeout(session.options.request_timeout_s):
                self._send(session, endpoint, label, body, record)
        except GreenletExit:
            # The user is being stopped (the test ends, or a shape lowers the users): the endpoint did nothing
            # wrong, so the request is kept out of the measurement, and the stop goes on.
            record.fail("cancelled", _CANCELLED)
            record.warmup = True
            if record.end_ns is None:
                record.end_ns = time.perf_counter_ns() - session.origin_ns
            session.finished(record)
            raise
        session.finished(record)
        if record.error_kind == "rate_limited":
            wait_s = min(record.retry_after_s if record.retry_after_s is not None else 1.0, _MAX_RETRY_WAIT_S)
            gevent.sleep(wait_s + random.uniform(0.0, 0.1 * wait_s))  # unsynchronized, like harness bench's retries
        return record

    def _send(self, session: Session, endpoint: Endpoint, label: str, body: bytes, record: Record) -> None:
        origin = session.origin_ns
        record.attempts = 1
        record.sent_ns = time.perf_counter_ns() - origin
        if record.dispatched_ns is None:
            record.dispatched_ns = record.sent_ns  # Locust's request start: the two are not told apart here
        response: Any = self.client.request(
            "POST",
            session.url(endpoint),
            name=label,
            data=body,  # type: ignore[arg-type]
            headers=session.headers,
            stream=True,
            catch_response=True,
        )
        with response:
            headers_ns = time.perf_counter_ns()
            meta: dict[str, Any] = response.request_meta
            status = response.status_code
            if not status:  # no response at all: Locust hands back the exception
                error: BaseException = getattr(response, "error", None) or LLMError("no response")
                record.end_ns = headers_ns - origin
                record.fail(error_kind(error), f"{type(error).__name__}: {error}")
                self._report(response, meta, record, label)
                return
            record.status = status
            record.headers_ns = headers_ns - origin
            record.request_id = response.headers.get("x-request-id")
            if status != 200:
                try:
                    raw = response.content or b""
                except (HTTPParseError, OSError, gevent.Timeout):
                    raw = b""
                record.end_ns = time.perf_counter_ns() - origin
                record_refusal(record, status, raw, response.headers.get("Retry-After"))
                self._report(response, meta, record, label)
                return
            ctype = response.headers.get("Content-Type") or ""
            if not ctype.startswith("text/event-stream"):
                record.nonconformant(f"Content-Type is {ctype!r}, not text/event-stream")
            self._read(session, socket_response(response), record, label, headers_ns)
            self._report(response, meta, record, label)

    def _read(self, session: Session, raw: HTTPSocketResponse, record: Record, label: str, headers_ns: int) -> None:
        """Read the body one `recv` at a time; bytes that came with the headers count as arriving with them."""
        endpoint: Endpoint = "chat" if record.endpoint == "chat" else "completion"
        state = StreamState(record, session.origin_ns, session.validator(endpoint), endpoint == "chat")
        parser = SSEParser()
        buffer = body_buffer(raw)
        try:
            if buffer:
                self._events(state, parser, buffer, headers_ns, label)
            while not raw.message_complete:
                sock = connection(raw)
                if sock is None:
                    break
                data = sock.recv(_RECV_BYTES)
                at = time.perf_counter_ns()
                if not data:
                    break
                raw.feed(data)  # decodes the chunked framing into the body buffer
                if buffer:
                    self._events(state, parser, buffer, at, label)
            if not raw.message_complete and not state.done:
                record.fail("disconnect", "the connection closed before the end of the response")
        except SSEError as exc:
            record.fail("protocol_error", str(exc))
        except (HTTPParseError, OSError) as exc:
            record.fail(error_kind(exc), f"{type(exc).__name__}: {exc}")
        except gevent.Timeout:  # the request's own timeout (see `stream`): a failure like any other
            record.fail("timeout", f"no complete response within {session.options.request_timeout_s:g} s")
        except GreenletExit:
            record.fail("cancelled", _CANCELLED)
            raise
        finally:
            raw.release()  # back to the pool when complete; closed (the server sees the client leave) otherwise
            state.finish(parser.close(), time.perf_counter_ns())

    def _events(self, state: StreamState, parser: SSEParser, buffer: bytearray, at_ns: int, label: str) -> None:
        data = bytes(buffer)
        del buffer[:]
        record = state.record
        had_token = record.first_token_ns is not None
        state.events(parser.feed(data), at_ns)
        if not had_token and record.first_token_ns is not None and record.sent_ns is not None:
            self.environment.events.request.fire(
                request_type="POST",
                name=f"{label} TTFT",
                response_time=(record.first_token_ns - record.sent_ns) / 1e6,
                response_length=0,
                exception=None,
                context=self.context(),
            )

    def _report(self, response: Any, meta: dict[str, Any], record: Record, label: str) -> None:
        """The whole request's event: its response time runs to the end of the stream, its size is output tokens."""
        if record.sent_ns is not None and record.end_ns is not None:
            meta["response_time"] = (record.end_ns - record.sent_ns) / 1e6
        meta["response_length"] = record.completion_tokens or 0
        if record.error_kind == "rate_limited":
            meta["name"] = f"{label} 429"
            response.success()
        elif record.error_kind is not None:
            detail = (record.error_detail or "")[:200]
            response.failure(LLMError(f"{record.error_kind}: {detail}"))
        else:
            response.success()
