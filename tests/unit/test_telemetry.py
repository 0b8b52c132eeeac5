"""The scraper against an in-process HTTP server on a random port: one that serves Prometheus text, one that stalls,
one that answers 404 and one that answers garbage. A scrape that fails is kept with its error; nothing fails the
run, and stopping never waits for a stalled server longer than a scrape's timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from harness.records import server_metrics
from harness.target import telemetry
from harness.target.endpoint import Target
from harness.target.telemetry import ScrapeConfig, Scraper
from tests.unit.local_http import Answering, serving

STALL_S = 3.0


class Handler(Answering):
    served: ClassVar[int] = 0
    headers_seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:  # http.server's name
        if self.path == "/stall":
            time.sleep(STALL_S)
        Handler.headers_seen.append(self.headers.get("X-Proxy-Token"))
        if self.path in ("/metrics", "/stall"):
            Handler.served += 1
            self.answer(200, f"# TYPE requests_total counter\nrequests_total {Handler.served}\n".encode())
        elif self.path == "/garbage":
            self.answer(200, b"<html><body>Welcome to nginx!</body></html>")
        else:
            self.answer(404, b"not found")


@pytest.fixture
def root() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


def target(root_url: str) -> Target:
    return Target.of(f"{root_url}/v1", ["esecret_x"], "m")


def scrape_for(url: str, seconds: float, tmp_path: Path, config: ScrapeConfig) -> server_metrics.ServerMetrics:
    origin = time.perf_counter_ns()
    scraper = Scraper(url, config, origin).start()
    time.sleep(seconds)
    done = scraper.stop(tmp_path / server_metrics.SERVER_METRICS_FILE, "run")
    found = server_metrics.read(done.path)
    assert found is not None and len(found.scrapes) == done.scrapes
    assert done.failed == sum(1 for s in found.scrapes if s.error is not None)
    return found


def test_scrapes_come_on_the_interval_stamped_on_the_runs_clock(root: str, tmp_path: Path) -> None:
    before = Handler.served
    config = ScrapeConfig(interval_s=0.1, headers=(("X-Proxy-Token", "t0ken"),))
    found = scrape_for(f"{root}/metrics", 0.55, tmp_path, config)
    # Ticks at 0, 0.1, …, 0.5 s, and one more when stopped (the run's end): at least 6, one per tick at most.
    assert 6 <= len(found.scrapes) <= 8
    assert all(s.error is None and s.status == 200 for s in found.scrapes)
    starts = [s.t_ns for s in found.scrapes]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(s.t_ns <= s.ended_ns for s in found.scrapes)
    assert starts[-1] < 2_000_000_000  # on the run's clock (relative to its origin), not the machine's
    values = [f.samples[0].value for s in found.scrapes for f in s.families if f.name == "requests"]
    assert values == list(range(before + 1, before + 1 + len(found.scrapes)))
    assert found.source.interval_s == 0.1 and found.source.url == f"{root}/metrics"
    assert "t0ken" in Handler.headers_seen


def test_a_stalled_server_times_out_its_scrapes_and_stopping_does_not_wait_for_it(root: str, tmp_path: Path) -> None:
    config = ScrapeConfig(interval_s=0.05)  # a scrape's timeout: max(interval, 2 s)
    started = time.monotonic()
    found = scrape_for(f"{root}/stall", 0.2, tmp_path, config)
    waited = time.monotonic() - started
    assert found.scrapes and all(s.error == "timed out after 2 s" for s in found.scrapes)
    assert waited < STALL_S  # stopped once the scrape in progress timed out, with no last scrape of a stalled server


@pytest.mark.parametrize(
    ("path", "status", "error"), [("/missing", 404, "HTTP 404"), ("/garbage", 200, "not Prometheus text")]
)
def test_a_404_or_garbage_is_recorded_as_each_scrapes_error(
    root: str, tmp_path: Path, path: str, status: int, error: str
) -> None:
    found = scrape_for(f"{root}{path}", 0.15, tmp_path, ScrapeConfig(interval_s=0.1))
    assert found.scrapes and all(s.status == status and (s.error or "").startswith(error) for s in found.scrapes)
    assert found.ok == []


def test_a_server_that_is_gone_is_recorded_too(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens there now
    found = scrape_for(f"http://127.0.0.1:{port}/metrics", 0.15, tmp_path, ScrapeConfig(interval_s=0.1))
    assert found.scrapes and all(s.status is None and "refused" in (s.error or "") for s in found.scrapes)


def test_by_default_the_targets_root_metrics_is_scraped_when_it_answers_with_prometheus_text(root: str) -> None:
    found = telemetry.resolve(ScrapeConfig(), target(root))
    assert found.url == f"{root}/metrics" and found.notice is None
    assert found.config() == {"url": f"{root}/metrics", "interval_s": 1.0, "notice": None}


def test_a_target_without_metrics_is_run_without_scraping_and_says_so(root: str) -> None:
    found = telemetry.resolve(ScrapeConfig(), Target.of(f"{root}/nothing/v1", ["k"], "m"))
    assert found.url is None
    assert found.notice == (
        f"server metrics not scraped: {root}/nothing/metrics did not answer with Prometheus text (HTTP 404); "
        "name the endpoint with --server-metrics URL"
    )
    garbage = telemetry.resolve(ScrapeConfig(url=None), Target.of(f"{root}/garbage/v1", ["k"], "m"))
    assert garbage.url is None and garbage.notice is not None and "(HTTP 404)" in garbage.notice


def test_an_endpoint_asked_for_is_scraped_even_when_it_fails_now(root: str) -> None:
    found = telemetry.resolve(ScrapeConfig(url=f"{root}/garbage"), target(root))
    assert found.url == f"{root}/garbage"
    assert found.notice is not None and found.notice.startswith(f"server metrics at {root}/garbage: not Prometheus")
    off = telemetry.resolve(ScrapeConfig(enabled=False), target(root))
    assert off.url is None and off.notice == "server metrics not scraped (--server-metrics none)"
