"""An incremental Server-Sent Events parser over raw bytes, as the WHATWG spec defines the format.

Bytes are fed as they arrive from the socket: an event may be split across reads and one read may hold several
events. Lines end in LF, CRLF or CR; lines starting with `:` are comments (keep-alives); `event:` names an event;
`id:` and `retry:` are accepted and ignored (a load generator never reconnects). Only a blank line dispatches an
event, so a stream cut in the middle of one is detectable (`close`).

The hot path (reads ending on event boundaries, one `data:` line per event) allocates only the payload slice and
the event tuple.
"""

from __future__ import annotations

EventName = bytes
SSEEvent = tuple[EventName, bytes]  # (event name, b"" for the default "message"; data)

_DATA = b"data"
_EVENT = b"event"
_COLON = 0x3A
_SPACE = 0x20
_LF = b"\n"
_BOM = b"\xef\xbb\xbf"
DONE = b"[DONE]"


class SSEError(ValueError):
    """The stream is not SSE a client could follow (an unterminated line larger than the limit)."""


class SSEParser:
    __slots__ = ("_data", "_event", "_more", "_skip_lf", "_started", "_tail", "comments", "ignored", "max_line")

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._tail = b""  # an incomplete line carried over to the next read
        self._data: bytes | None = None  # the first data line of the event being built
        self._more: list[bytes] | None = None  # further data lines, rare
        self._event = b""
        self._skip_lf = False
        self._started = False
        self.comments = 0  # comment lines seen (servers send them as keep-alives)
        self.ignored = 0  # lines with a field this parser does not know (kept as a count for diagnostics)
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events that `chunk` completes, in order."""
        if not chunk:
            return []  # nothing to parse, and a CR held from the last read must still meet the LF that may follow
        if not self._started:
            chunk, self._tail = self._tail + chunk, b""
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._tail = chunk  # too short to tell a byte-order mark yet
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf:
            # The previous read ended with a CR, already taken as a line end: an LF right after it is its pair.
            self._skip_lf = False
            if chunk.startswith(_LF):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", _LF).replace(b"\r", _LF)
        if self._tail:
            chunk = self._tail + chunk
            self._tail = b""
        events: list[SSEEvent] = []
        pos = 0
        end = len(chunk)
        while pos < end:
            nl = chunk.find(_LF, pos)
            if nl < 0:
                if end - pos > self.max_line:
                    raise SSEError(f"an SSE line is longer than {self.max_line} bytes")
                self._tail = chunk[pos:]
                break
            if nl == pos:
                if self._data is not None:
                    events.append(self._dispatch())
                else:
                    self._event = b""
            elif chunk[pos] == _COLON:
                self.comments += 1
            elif chunk.startswith(b"data:", pos):
                start = pos + 6 if nl > pos + 5 and chunk[pos + 5] == _SPACE else pos + 5
                self._add_data(chunk[start:nl])
            else:
                self._field(chunk[pos:nl])
            pos = nl + 1
        return events

    @property
    def midway(self) -> bool:
        """Bytes of an event not yet complete are held: the last read did not end where an event did."""
        return bool(self._tail) or self._data is not None or bool(self._event)

    def close(self) -> bool:
        """End of stream: True when it ended inside an event (an unterminated line or an undispatched event)."""
        truncated = bool(self._tail) or self._data is not None
        self._skip_lf = False
        self._tail = b""
        self._data = None
        self._more = None
        self._event = b""
        return truncated

    def _add_data(self, value: bytes) -> None:
        if self._data is None:
            self._data = value
        elif self._more is None:
            self._more = [value]
        else:
            self._more.append(value)

    def _field(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
        if name == _DATA:
            self._add_data(value)
        elif name == _EVENT:
            self._event = value
        elif name not in (b"id", b"retry"):
            self.ignored += 1

    def _dispatch(self) -> SSEEvent:
        data = self._data
        assert data is not None
        if self._more is not None:
            data = _LF.join([data, *self._more])
            self._more = None
        event = (self._event, data)
        self._data = None
        self._event = b""
        return event
