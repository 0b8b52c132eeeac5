"""One real request per mode, read off the socket as wrk reads it: what a full response looks like, byte for byte
(status line, headers and chunked framing included), and how many SSE events and content chunks a stream carries."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass

from benchmarks.server_capacity.servers import Server, request_body
from benchmarks.support.processes import HOST


@dataclass
class Probe:
    status: int
    wire_bytes: int  # status line + headers + body as sent (chunked framing included)
    events: int  # SSE events other than [DONE]
    content_chunks: int  # events that carry output text
    done: bool
    completion_tokens: int | None


def _read_raw(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One keep-alive request (as wrk sends it) and exactly the bytes of its response."""
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall("\r\n".join(head).encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(s)
        end = data.index(b"\r\n\r\n") + 4
        fields = data[:end].decode("latin-1").lower()
        if m := re.search(r"\r\ncontent-length:\s*(\d+)", fields):
            while len(data) < end + int(m.group(1)):
                data += _recv(s)
            return data[: end + int(m.group(1))]
        if "chunked" not in fields:
            raise RuntimeError("the probe response has neither Content-Length nor chunked framing")
        while not data.endswith(b"\r\n0\r\n\r\n"):
            data += _recv(s)
        return data


def _recv(s: socket.socket) -> bytes:
    chunk = s.recv(65536)
    if not chunk:
        raise RuntimeError("the server closed the connection in the middle of the probe response")
    return chunk


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


def probe(server: Server, stream: bool) -> Probe:
    raw = _read_raw(server.port, "/v1/chat/completions", request_body(stream), server.headers)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    wire = len(raw)
    if not stream:
        tokens = None
        if status == 200:
            tokens = json.loads(payload).get("usage", {}).get("completion_tokens")
        return Probe(status, wire, 0, 0, False, tokens)
    events = content = 0
    done = False
    tokens = None
    for block in payload.decode().split("\n\n"):
        data = "\n".join(ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:"))
        if not data:
            continue
        if data == "[DONE]":
            done = True
            continue
        events += 1
        chunk = json.loads(data)
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content") or choice.get("text"):
                content += 1
        if chunk.get("usage"):
            tokens = chunk["usage"].get("completion_tokens")
    return Probe(status, wire, events, content, done, tokens)
