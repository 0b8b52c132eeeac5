"""Scraping the target's Prometheus metrics during a run, on a thread of its own, off the loop that stamps requests.

Where: `--server-metrics URL`, or by default the target's root `/metrics` when it answers with Prometheus text
(`resolve`; a target without one is run without scraping, with a notice). How often: `--scrape-interval` (1 s),
on absolute ticks of the monotonic clock; a tick missed by a slow scrape is skipped, not made up.

Each scrape is stamped with `time.perf_counter_ns()` relative to the run's origin when its request is sent and when
its answer has been read, so that the server's numbers line up with the records. During the load the thread only
fetches and spools the raw answer to a temporary file: reading a socket and writing a file release the GIL, while
parsing a few hundred lines of Prometheus text would hold it for milliseconds at a time against the event loop and
the pacer. The spool is parsed when the scraper stops, after the load, into `server_metrics.jsonl`
(`harness.records.server_metrics`). A scrape that fails, times out or is not Prometheus text is kept as a scrape with
its error: it never fails the run.

Only the standard library's HTTP client is used, and no proxy from the environment (as the load's own client).
"""

from __future__ import annotations

import http.client
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from harness.records.server_metrics import Family, Scrape, ServerMetricsWriter, Source, parse
from harness.target.endpoint import Target

DEFAULT_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 5.0
MAX_BYTES = 64 * 1024 * 1024  # a metrics page larger than this is not read in full (and fails to parse)
_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"  # the classic text format, which every exporter serves


@dataclass(frozen=True, slots=True)
class ScrapeConfig:
    """What `--server-metrics` and `--scrape-interval` asked: `url=None` (enabled) means the target's root
    `/metrics`, if it answers with Prometheus text; `headers` go with every scrape (a proxy's credentials)."""

    enabled: bool = True
    url: str | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def timeout_s(self) -> float:
        """How long one scrape may take before it is recorded as timed out."""
        return max(self.interval_s, 2.0)


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int | None
    body: bytes
    error: str | None  # None: a 200 answer


def get(url: str, timeout_s: float, headers: Sequence[tuple[str, str]] = (), accept: str = _ACCEPT) -> Fetched:
    """One GET without a proxy, over within about `timeout_s`; every failure is in the answer's `error`, none is
    raised."""
    deadline = time.monotonic() + timeout_s
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": accept, "Accept-Encoding": "identity", **dict(headers)})
    timed_out = Fetched(None, b"", f"timed out after {timeout_s:g} s")
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = _read(response, deadline)
            return timed_out if body is None else Fetched(int(response.status), body, None)
    except urllib.error.HTTPError as exc:
        exc.close()
        return Fetched(exc.code, b"", f"HTTP {exc.code}")
    except TimeoutError:
        return timed_out
    except urllib.error.URLError as exc:
        return timed_out if isinstance(exc.reason, TimeoutError) else Fetched(None, b"", str(exc.reason))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return Fetched(None, b"", f"{type(exc).__name__}: {exc}")


def _read(response: Any, deadline: float) -> bytes | None:
    """The body, read in pieces so that a server sending it drop by drop cannot hold the scrape past its deadline
    (None: it did)."""
    parts: list[bytes] = []
    size = 0
    while size < MAX_BYTES:
        part = response.read1(min(1 << 16, MAX_BYTES - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
        if time.monotonic() > deadline:
            return None
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The endpoint to scrape (None: none), and what to tell the user about it."""

    url: str | None
    interval_s: float
    notice: str | None = None

    def config(self) -> dict[str, Any]:
        """What a run's configuration records of its scraping."""
        return {"url": self.url, "interval_s": self.interval_s, "notice": self.notice}


def resolve(config: ScrapeConfig, target: Target) -> Resolved:
    """Where to scrape: the URL asked (scraped even when it does not answer now: its failures are recorded), or the
    target's root `/metrics` when it answers with Prometheus text; nothing when scraping is off."""
    if not config.enabled:
        return Resolved(None, config.interval_s, "server metrics not scraped (--server-metrics none)")
    url = config.url or f"{target.root_url}/metrics"
    problem = _probe(url, config.headers)
    if problem is None:
        return Resolved(url, config.interval_s)
    if config.url is not None:
        return Resolved(url, config.interval_s, f"server metrics at {url}: {problem} now; scraped anyway")
    return Resolved(
        None,
        config.interval_s,
        f"server metrics not scraped: {url} did not answer with Prometheus text ({problem}); "
        "name the endpoint with --server-metrics URL",
    )


def _probe(url: str, headers: Sequence[tuple[str, str]]) -> str | None:
    """Why `url` is not a Prometheus text endpoint now (None: it is)."""
    fetched = get(url, PROBE_TIMEOUT_S, headers)
    if fetched.error is not None:
        return fetched.error
    try:
        parse(fetched.body.decode("utf-8", "replace"))
    except ValueError as exc:
        return str(exc)
    return None


class Scraper:
    """Scrapes `url` every `interval_s` on its own thread from `start` to `stop`; `stop` writes the file."""

    def __init__(self, url: str, config: ScrapeConfig, origin_ns: int) -> None:
        self.url = url
        self.config = config
        self.origin_ns = origin_ns
        self.scrapes = 0
        self._last_timed_out = False
        self._stop = threading.Event()
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="server-metrics-")  # noqa: SIM115  # closed by stop
        self._thread = threading.Thread(target=self._run, name="server-metrics", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval_ns = round(self.config.interval_s * 1e9)
        start = time.perf_counter_ns()
        tick = 0
        while not self._stop.wait(max(0.0, (start + tick * interval_ns - time.perf_counter_ns()) / 1e9)):
            self.scrape_once()
            tick = (time.perf_counter_ns() - start) // interval_ns + 1

    def scrape_once(self) -> None:
        """One scrape, spooled raw: a header line, then the body."""
        sent = time.perf_counter_ns()
        fetched = get(self.url, self.config.timeout_s, self.config.headers)
        ended = time.perf_counter_ns()
        header = {"t_ns": sent - self.origin_ns, "ended_ns": ended - self.origin_ns, "status": fetched.status,
                  "error": fetched.error, "length": len(fetched.body)}  # fmt: skip
        self._spool.write(orjson.dumps(header) + b"\n" + fetched.body)
        self.scrapes += 1
        self._last_timed_out = fetched.status is None and (fetched.error or "").startswith("timed out")

    def stop(self, path: Path, run_id: str) -> Scraped:
        """Stop scraping, scrape once more (the run's end), and write every scrape, parsed, to `path`.

        Waits at most for the scrape in progress to end or time out; a server whose last scrape timed out is not
        waited for again."""
        self._stop.set()
        self._thread.join(self.config.timeout_s + 1.0)
        if not self._thread.is_alive() and not self._last_timed_out:  # a stuck thread keeps the spool: no last one
            self.scrape_once()
        source = Source(run_id, self.url, self.config.interval_s, self.origin_ns)
        failed, first_error = 0, None
        with ServerMetricsWriter(path, source) as writer:
            for scrape in self._parsed():
                writer.write(scrape)
                if scrape.error is not None:
                    failed += 1
                    first_error = first_error or scrape.error
        self._spool.close()
        return Scraped(path, self.url, self.scrapes, failed, first_error)

    def _parsed(self) -> list[Scrape]:
        self._spool.flush()
        self._spool.seek(0)
        scrapes: list[Scrape] = []
        while line := self._spool.readline():
            header = orjson.loads(line)
            body = self._spool.read(header["length"])
            scrapes.append(_scrape(header, body))
        return scrapes


def _scrape(header: dict[str, Any], body: bytes) -> Scrape:
    error = header["error"]
    families: tuple[Family, ...] = ()
    if error is None:
        try:
            families = parse(body.decode("utf-8", "replace"))
        except ValueError as exc:
            error = str(exc)[:300]
    return Scrape(header["t_ns"], header["ended_ns"], header["status"], error, families, header["length"])


@dataclass(frozen=True, slots=True)
class Scraped:
    path: Path
    url: str
    scrapes: int
    failed: int
    first_error: str | None

    def describe(self) -> str:
        failed = "" if not self.failed else f", {self.failed} failed (first: {self.first_error})"
        return f"server metrics: {self.scrapes} scrapes of {self.url}{failed}"
