"""A JSON-lines file written as its lines come (`records.jsonl`, `server_metrics.jsonl`): its first line, the run's
or the source's, is written when it is opened."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO, Self

import orjson


class JsonLines:
    def __init__(self, path: Path, first: object) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self.line(first)

    def line(self, value: object, flush: bool = False) -> None:
        self._file.write(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        if flush:
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
