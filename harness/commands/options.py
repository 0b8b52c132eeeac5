"""Argument types the commands share: lists of numbers, headers, ramps; the server-metrics options."""

from __future__ import annotations

import argparse
import math
import urllib.parse

from harness.target.telemetry import DEFAULT_INTERVAL_S, ScrapeConfig

DEFAULT_SERVER_METRICS = "auto"  # the target's root /metrics, when it answers with Prometheus text
MIN_SCRAPE_INTERVAL_S = 0.05


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("a header is 'Name: value'")
    return name.strip(), value.strip()


def ramp(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("a ramp is START:END requests per second")
    return float(start), float(end)


def users(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a sweep is a comma-separated list of user counts of at least 1")
    return values


# The target's Prometheus metrics (`harness.target.telemetry`), on `harness bench` and `harness run`.


def server_metrics(text: str) -> str | None:
    """An http(s) URL of a Prometheus text endpoint, `auto` (the target's own, if it has one) or `none` (None)."""
    if text.strip().lower() in ("none", DEFAULT_SERVER_METRICS):
        return None if text.strip().lower() == "none" else DEFAULT_SERVER_METRICS
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"an http(s) URL such as http://host:8000/metrics, auto or none; not {text!r}")
    return text.strip()


def scrape_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < MIN_SCRAPE_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"seconds between scrapes, at least {MIN_SCRAPE_INTERVAL_S:g}; not {text!r}")
    return value


def add_server_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server metrics (the target's Prometheus endpoint, scraped during the load)")
    group.add_argument(
        "--server-metrics",
        type=server_metrics,
        default=DEFAULT_SERVER_METRICS,
        metavar="URL|auto|none",
        help="the endpoint to scrape (default auto: the base URL's root /metrics when it answers with Prometheus "
        "text; none: scrape nothing)",
    )
    group.add_argument(
        "--scrape-interval", type=scrape_interval, default=DEFAULT_INTERVAL_S, metavar="S", help="default 1 s"
    )
    group.add_argument(
        "--server-metrics-header",
        action="append",
        default=[],
        type=header,
        metavar="'NAME: VALUE'",
        help="a header on every scrape (repeatable), e.g. a proxy's 'Authorization: Bearer …'",
    )


def scrape_config(args: argparse.Namespace) -> ScrapeConfig:
    """The scraping the options ask for."""
    wanted = args.server_metrics
    return ScrapeConfig(
        enabled=wanted is not None,
        url=None if wanted in (None, DEFAULT_SERVER_METRICS) else wanted,
        interval_s=args.scrape_interval,
        headers=tuple(args.server_metrics_header),
    )
