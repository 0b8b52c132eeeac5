"""The target's own Prometheus metrics, scraped during a run and kept raw beside its records: `server_metrics.jsonl`.

The file starts with one `source` line (where and how often the metrics were scraped, and the run's monotonic
origin), then holds one `scrape` line per scrape: when the scrape's request was sent (`t_ns`) and when its answer
had been read (`ended_ns`) — ns of `time.perf_counter_ns()` since the run's `origin_ns`, the clock of the records,
so the server's numbers line up with the client's — and either every metric family the answer held (name, type
and samples: name, labels, value) or the error that made the scrape fail. Schema: `schemas/server_metrics.json`.

Nothing is computed here: `harness.analysis.server` maps known families to common names and derives the figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson
from prometheus_client.parser import text_string_to_metric_families

from harness.records.lines import JsonLines

SERVER_METRICS_FILE = "server_metrics.jsonl"


class Sample(NamedTuple):
    name: str  # the sample's own name: `x_total`, `x_bucket`, `x_sum`, … of family `x`
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # counter, gauge, histogram, summary, info, stateset, unknown, …: as the exposition declared it
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """The first line: what was scraped, how often, and the run's clock."""

    run_id: str
    url: str
    interval_s: float
    origin_ns: int
    type: Literal["source"] = "source"


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape. `status` is the HTTP status (None: no answer); `error` says why the scrape gave no samples."""

    t_ns: int
    ended_ns: int
    status: int | None
    error: str | None
    families: tuple[Family, ...] = ()
    bytes: int = 0
    type: Literal["scrape"] = "scrape"

    @property
    def at_ns(self) -> int:
        """When the server's numbers were read, as well as the client can tell: the middle of the scrape."""
        return (self.t_ns + self.ended_ns) // 2


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    source: Source
    scrapes: list[Scrape] = field(default_factory=list)

    @property
    def ok(self) -> list[Scrape]:
        return [s for s in self.scrapes if s.error is None]


def parse(text: str) -> tuple[Family, ...]:
    """A Prometheus text exposition as families (ValueError when it is not one, or holds no family)."""
    try:
        families = tuple(
            Family(f.name, f.type, tuple(Sample(s.name, dict(s.labels), float(s.value)) for s in f.samples))
            for f in text_string_to_metric_families(text)
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:  # what the parser raises on text it cannot read
        raise ValueError(f"not Prometheus text: {exc}") from exc
    if not families:
        raise ValueError("not Prometheus text: no metric family")
    return families


class ServerMetricsWriter(JsonLines):
    """Writes the source line, then each scrape as it is given."""

    def __init__(self, path: Path, source: Source) -> None:
        super().__init__(path, source)

    def write(self, scrape: Scrape) -> None:
        line = {
            "type": "scrape",
            "t_ns": scrape.t_ns,
            "ended_ns": scrape.ended_ns,
            "status": scrape.status,
            "error": scrape.error,
            "bytes": scrape.bytes,
            "families": [
                {"name": f.name, "type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
                for f in scrape.families
            ],
        }
        self.line(line)


def write(path: Path, source: Source, scrapes: Iterable[Scrape]) -> None:
    with ServerMetricsWriter(path, source) as writer:
        for scrape in scrapes:
            writer.write(scrape)


def _family(obj: dict[str, Any]) -> Family:
    samples = tuple(
        Sample(str(name), dict(labels), math.nan if value is None else float(value))
        for name, labels, value in obj["samples"]
    )
    return Family(str(obj["name"]), str(obj["type"]), samples)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                obj = orjson.loads(line)
                if not isinstance(obj, dict) or obj.get("type") not in ("source", "scrape"):
                    raise ValueError(f"{path}:{n}: not a source or scrape line")
                yield n, obj


def read(path: Path) -> ServerMetrics | None:
    """The server metrics kept beside a run (None when it has none); ValueError on a file that is not one."""
    if not path.exists():
        return None
    source: Source | None = None
    scrapes: list[Scrape] = []
    for n, obj in _lines(path):
        if obj["type"] == "source":
            if source is not None:
                raise ValueError(f"{path}:{n}: a second source line")
            source = Source(str(obj["run_id"]), str(obj["url"]), float(obj["interval_s"]), int(obj["origin_ns"]))
            continue
        families = tuple(_family(f) for f in obj.get("families") or ())
        scrapes.append(Scrape(int(obj["t_ns"]), int(obj["ended_ns"]), obj.get("status"), obj.get("error"), families,
                              int(obj.get("bytes") or 0)))  # fmt: skip
    if source is None:
        raise ValueError(f"{path}: no source line")
    scrapes.sort(key=lambda s: s.t_ns)
    return ServerMetrics(source, scrapes)
