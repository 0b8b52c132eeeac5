"""`harness report` on hand-built runs whose values are known by construction (see `built_runs.sweep_run`)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import jsonschema
import orjson
import pytest

import schemas
from harness.analysis.frame import latency_samples
from harness.analysis.summary import build_summary
from harness.analysis.timeline import timeline
from harness.cli import main
from harness.commands import bench
from harness.load.bench import run_config
from harness.load.prompts import Calibration
from harness.records import rundir, truth
from harness.records.record import write_run
from harness.report import plots, tables
from harness.report.build import build as build_report
from harness.report.markdown import markdown
from harness.target.endpoint import Target
from tests.unit.built_runs import MS, ORIGIN_NS, conformance_result, sweep_run, write_dir
from tests.unit.test_traffic import session

PNG = b"\x89PNG\r\n\x1a\n"


def md_rows(text: str) -> dict[str, list[str]]:
    """The Markdown table rows by their first cell."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "run", sweep_run(), conformance_result(failed=1))


def test_one_run_writes_the_page_the_markdown_and_a_valid_summary(run_dir: Path) -> None:
    written = build_report([run_dir], limit=30)
    assert written.html == run_dir / "report.html" and written.markdown == run_dir / "report.md"
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    assert summary["validity"]["verdict"] == "VALID"
    assert summary["sources"] == ["records.jsonl"]


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens"), [("32", "16"), ("normal:256,64", "uniform:10,20"), ("lognormal:100,0.5", "8")]
)
def test_the_configuration_table_shows_token_lengths_as_the_user_wrote_them(
    tmp_path: Path, input_tokens: str, output_tokens: str
) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--input-tokens", input_tokens, "--output-tokens", output_tokens])
    target = Target.of("http://127.0.0.1:1/v1", ["k"], "m", "test")
    config = run_config(bench.config_of(args), Calibration(), target)
    built = sweep_run()
    run = dataclasses.replace(built, run=dataclasses.replace(built.run, config=config))
    directory = write_dir(tmp_path / "run", run)
    build_report([directory], limit=30)
    summary = orjson.loads((directory / "summary.json").read_bytes())
    assert summary["config"]["prompts"]["input_tokens"] == input_tokens
    assert summary["config"]["prompts"]["output_tokens"] == output_tokens
    rows = {row[0]: row[1] for row in tables.target_table(summary).rows}
    assert rows["prompts"] == f"synthetic, input {input_tokens} tokens, output {output_tokens} tokens"


def test_the_step_table_holds_the_values_built_into_the_records(run_dir: Path) -> None:
    build_report([run_dir], limit=30)
    rows = md_rows((run_dir / "report.md").read_text())
    header = rows["step"]
    one, thirty, forty = (dict(zip(header, rows[f"concurrency={n}"], strict=True)) for n in (1, 30, 40))
    assert (one["ok/total"], one["req/s"], one["out tok/s"]) == ("4/4", "4.00", "20")
    # Each latency ± its bound: the records' reads were kernel-timed alone, so only the delivery granularity
    # (0.05 ms) is left, shared among a TPOT's 4 gaps.
    latencies = (one["TTFT p50"], one["ITL p99"], one["E2E p50"], one["TPOT p50"])
    assert latencies == ("50.0 ±0.05", "10.0 ±0.05", "90.0 ±0.05", "10.0 ±0.013")
    assert (thirty["ok/total"], thirty["req/s"], thirty["out tok/s"], thirty["429s"]) == ("30/30", "30.00", "150", "0")
    assert (thirty["TTFT p99"], thirty["ITL p50"], thirty["E2E p99"]) == ("100.0 ±0.05", "20.0 ±0.05", "180.0 ±0.05")
    assert (forty["ok/total"], forty["429s"], forty["errors"], forty["TTFT p50"]) == (
        "30/40",
        "10",
        "0%",
        "200.0 ±0.05",
    )
    overall = dict(zip(header, rows["all"], strict=True))
    assert (overall["ok/total"], overall["429s"], overall["TTFT p50"], overall["TTFT p99"]) == (
        "64/74",
        "10",
        "100.0 ±0.05",
        "200.0 ±0.05",
    )


def test_the_knee_and_the_limit_of_the_sweep(run_dir: Path) -> None:
    build_report([run_dir], limit=30)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["knee"]["label"] == "concurrency=30" and summary["knee"]["load"] == 30
    limit = summary["limit"]
    assert limit["honoured"] is True
    assert [(s["side"], s["responses_429"]) for s in limit["steps"]] == [
        ("at_or_below", 0),
        ("at_or_below", 0),
        ("above", 10),
    ]
    text = (run_dir / "report.md").read_text()
    assert "limit 30 honoured" in text and "knee at concurrency=30" in text


def test_429s_below_the_limit_break_it(tmp_path: Path) -> None:
    run = sweep_run()
    moved = [dataclasses.replace(r, step=1) if r.error_kind == "rate_limited" else r for r in run.requests]
    directory = write_dir(tmp_path / "run", dataclasses.replace(run, requests=moved))
    build_report([directory], limit=30)
    summary = orjson.loads((directory / "summary.json").read_bytes())
    assert summary["limit"]["honoured"] is False
    assert summary["limit"]["responses_429_at_or_below"] == 10
    assert summary["limit"]["steps_above_without_429"] == 1
    assert "**NOT honoured**" in (directory / "report.md").read_text()


def test_the_page_is_self_contained_with_every_section(run_dir: Path) -> None:
    page = build_report([run_dir], limit=30).html.read_text()
    assert page.count('src="data:image/png;base64,') == 4  # CDFs, sweep, timeline, lengths
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    for heading in ("Target and configuration", "Validity", "Summary", "Concurrency limit and knee", "Conformance",
                    "Latency distributions", "Throughput and latency against load", "Timeline",
                    "Prompt and output lengths"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in page
    assert "test_limits.py::test_check_0" in page and "the 31st request was admitted" in page
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in page and "reference server (sim engine)" in page


def test_conformance_failures_reach_the_markdown(run_dir: Path) -> None:
    text = markdown([build_summary(rundir.load(run_dir), limit=30)], ["run"])
    assert "conformance 1/2 ❌" in text
    assert "conformance failed: `test_limits.py::test_check_0` the 31st request was admitted" in text


def test_every_plot_is_a_png(run_dir: Path) -> None:
    rd = rundir.load(run_dir)
    summary = build_summary(rd, limit=30)
    samples = [("run", latency_samples(rd.run))]
    figures = [
        plots.cdfs(samples),
        plots.sweep([("run", summary)]),
        plots.timeline(timeline(rd.run), rd.run.steps, 30, "run"),
        plots.lengths(samples),
    ]
    for png in figures:
        assert png is not None and png.startswith(PNG) and len(png) > 10_000


def test_a_single_step_has_no_sweep_plot(tmp_path: Path) -> None:
    run = sweep_run()
    one = dataclasses.replace(run, steps=run.steps[:1], requests=[r for r in run.requests if r.step == 0])
    directory = write_dir(tmp_path / "one", one)
    page = build_report([directory]).html.read_text()
    assert "A single load level: no sweep to draw." in page
    assert page.count("data:image/png;base64,") == 3


def test_timeline_counts_what_happened_in_each_bin(run_dir: Path) -> None:
    frame = timeline(rundir.load(run_dir).run, bin_s=1.0)
    assert frame["t_s"].tolist()[:3] == [0.0, 1.0, 2.0]
    # Step 0: four requests of 90 ms in flight over one second → 0.36 on average; 20 tokens arrived.
    assert frame["in_flight"][0] == pytest.approx(0.36)
    assert frame["output_tokens_per_s"].tolist()[:3] == [20.0, 150.0, 150.0]
    assert frame["responses_429_per_s"].tolist()[:3] == [0.0, 0.0, 10.0]
    assert frame["errors_per_s"].sum() == 0


def built_truth(by: list[truth.ReceivedBy | None]) -> list[truth.Truth]:
    """The server saw each request 2 ms after it was sent and wrote each chunk 1 ms before the client stamped it;
    the successful requests' arrivals were stamped by `by`, in turn."""
    ok = [r for r in sweep_run().requests if r.error_kind is None]
    return [
        truth.Truth(
            r.request_id or "",
            ORIGIN_NS + (r.sent_ns or 0) + 2 * MS,
            tuple(ORIGIN_NS + c - MS for c in r.chunk_ns),
            by[i % len(by)],
        )
        for i, r in enumerate(ok)
    ]


def test_ground_truth_gives_the_timing_error(run_dir: Path) -> None:
    truth.write(run_dir / truth.TRUTH_FILE, built_truth(["kernel"]))
    summary = build_summary(rundir.load(run_dir))
    errors = summary["timing_error_ms"]
    assert errors["matched"] == 64 and errors["unmatched"] == 0
    assert (errors["ttft"]["min"], errors["ttft"]["max"]) == (3.0, 3.0)
    assert errors["itl"]["max"] == 0.0
    assert errors["received_by"] == {"kernel": 64, "loop": 0, "unknown": 0}


def test_kernel_stamped_ground_truth_is_said_so(run_dir: Path) -> None:
    truth.write(run_dir / truth.TRUTH_FILE, built_truth(["kernel"]))
    written = build_report([run_dir], limit=30)
    line = (
        "- timing error against ground truth: TTFT p99 3.0 ms, ITL p99 0.0 ms "
        "(64 requests; server arrival stamped by the kernel)"
    )
    assert line in written.markdown.read_text().splitlines()
    assert "warning: the server" not in written.markdown.read_text()
    assert "<p class='note'>server arrival stamped by the kernel.</p>" in written.html.read_text()


def test_loop_stamped_ground_truth_warns_that_the_ttft_error_holds_the_server_s_lateness(run_dir: Path) -> None:
    truth.write(run_dir / truth.TRUTH_FILE, built_truth(["kernel", "loop", "loop", "loop"]))
    written = build_report([run_dir], limit=30)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    assert summary["timing_error_ms"]["received_by"] == {"kernel": 16, "loop": 48, "unknown": 0}
    warning = (
        "warning: the server's arrivals were taken by its event loop for 48 of 64 requests: "
        "TTFT error includes the server's own lateness"
    )
    lines = written.markdown.read_text().splitlines()
    assert "- timing error against ground truth: TTFT p99 3.0 ms, ITL p99 0.0 ms (64 requests)" in lines
    assert f"- {warning}" in lines
    assert warning.removeprefix("warning: ").replace("'", "&#x27;") in written.html.read_text()


def test_ground_truth_from_before_arrivals_were_attributed_says_it_does_not_know(run_dir: Path) -> None:
    lines = [orjson.loads(orjson.dumps(t)) for t in built_truth(["kernel"])]
    (run_dir / truth.TRUTH_FILE).write_bytes(
        b"".join(orjson.dumps({k: v for k, v in line.items() if k != "received_by"}) + b"\n" for line in lines)
    )
    written = build_report([run_dir], limit=30)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["timing_error_ms"]["received_by"] == {"kernel": 0, "loop": 0, "unknown": 64}
    assert "(64 requests; the server did not say whose clock took its arrivals)" in written.markdown.read_text()


def test_several_runs_side_by_side(tmp_path: Path) -> None:
    base = write_dir(tmp_path / "a", sweep_run())
    slow = sweep_run()
    doubled = [
        dataclasses.replace(
            r,
            first_token_ns=None
            if r.first_token_ns is None
            else r.first_token_ns + (r.first_token_ns - (r.sent_ns or 0)),
            chunk_ns=[c + (r.first_token_ns or 0) - (r.sent_ns or 0) for c in r.chunk_ns],
            end_ns=(r.end_ns or 0) + ((r.first_token_ns or 0) - (r.sent_ns or 0) if r.first_token_ns else 0),
        )
        for r in slow.requests
    ]
    other = write_dir(tmp_path / "b", dataclasses.replace(slow, requests=doubled))
    written = build_report([base, other], labels="main,pr")
    assert written.html.parent == tmp_path / "compare-main-vs-pr"
    assert (base / "summary.json").exists() and (other / "summary.json").exists()
    rows = md_rows(written.markdown.read_text())
    assert rows[""] == ["main", "pr", "Δ pr"]
    assert rows["TTFT p50 (ms)"] == ["100.0", "200.0", "+100.0%"]
    assert rows["requests ok"] == ["64", "64", "+0.0%"]
    page = written.html.read_text()
    assert page.count("data:image/png;base64,") == 5  # one timeline per run


def test_worker_files_are_merged_on_their_wall_clock(tmp_path: Path) -> None:
    """Two workers, the second started 0.5 s later on another clock, each with half of the requests and users."""
    run = sweep_run()
    offset = 500 * MS
    mine = [r for r in run.requests if r.index % 2 == 0]
    theirs = [dataclasses.replace(r, scheduled_ns=r.scheduled_ns - offset, sent_ns=(r.sent_ns or 0) - offset,
                                  headers_ns=(r.headers_ns or 0) - offset, end_ns=(r.end_ns or 0) - offset,
                                  first_token_ns=None if r.first_token_ns is None else r.first_token_ns - offset,
                                  chunk_ns=[c - offset for c in r.chunk_ns])
              for r in run.requests if r.index % 2 == 1]  # fmt: skip
    users = [s.concurrency or 0 for s in run.steps]
    first = [dataclasses.replace(s, label=f"concurrency={n - n // 2}", concurrency=n - n // 2)
             for s, n in zip(run.steps, users, strict=True)]  # fmt: skip
    second = [dataclasses.replace(s, label=f"concurrency={n // 2}", concurrency=n // 2,
                                  started_ns=s.started_ns - offset, measure_start_ns=s.measure_start_ns - offset,
                                  dispatch_end_ns=s.dispatch_end_ns - offset, ended_ns=s.ended_ns - offset)
              for s, n in zip(run.steps, users, strict=True)]  # fmt: skip
    directory = tmp_path / "locust"
    directory.mkdir()
    write_run(directory / "records-worker-1.jsonl", run.run, first, mine)
    later = dataclasses.replace(run.run, started_unix_ns=run.run.started_unix_ns + offset, origin_ns=7, host="other")
    write_run(directory / "records-worker-2.jsonl", later, second, theirs)
    merged = build_summary(rundir.load(directory), limit=30)
    single = build_summary(rundir.load(write_dir(tmp_path / "single", run)), limit=30)
    assert merged["sources"] == ["records-worker-1.jsonl", "records-worker-2.jsonl"]
    assert [s["label"] for s in merged["steps"]] == ["concurrency=1", "concurrency=30", "concurrency=40"]
    assert [s["concurrency"] for s in merged["steps"]] == [1, 30, 40]
    for a, b in zip(merged["steps"], single["steps"], strict=True):
        assert a["requests"] == b["requests"]
        assert a["latency_ms"] == b["latency_ms"]
        assert a["window_s"] == b["window_s"]
    assert merged["limit"]["honoured"] is True


def test_records_without_step_lines_make_one_step(tmp_path: Path) -> None:
    run = sweep_run()
    directory = write_dir(tmp_path / "nosteps", dataclasses.replace(run, steps=[]))
    summary = build_summary(rundir.load(directory))
    assert [s["label"] for s in summary["steps"]] == ["all"]
    assert summary["overall"]["requests"]["total"] == 74


def test_the_command(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir), "--concurrency-limit", "30"]) == 0
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(run_dir), "--labels", "a,b"]) == 2


def test_the_real_traffic_sections_appear_only_for_such_runs(run_dir: Path, tmp_path: Path) -> None:
    plain = build_report([run_dir], limit=30)
    plain_page, plain_note = plain.html.read_text(), plain.markdown.read_text()
    for heading in ("TTFT by turn", "Prefix cache and context length", "Sessions", "Trace replay"):
        assert f"<h2>{heading}</h2>" not in plain_page and f"### {heading}" not in plain_note
    base = sweep_run()
    records = [*session(0, 0.0), *session(1, 20.0)]
    config = {**base.run.config, "workload": {"kind": "sessions"}}
    talk = write_dir(tmp_path / "talk", dataclasses.replace(base, run=dataclasses.replace(base.run, config=config),
                                                            steps=base.steps[:1], requests=records))  # fmt: skip
    written = build_report([talk])
    page, note = written.html.read_text(), written.markdown.read_text()
    for heading in ("TTFT by turn", "Prefix cache and context length", "Sessions"):
        assert f"<h2>{heading}</h2>" in page and f"### {heading}" in note
    assert "Trace replay" not in page
    rows = md_rows(note)
    assert rows["1"][:5] == ["2/2", "20.0", "20.0", "20.0", "300"]  # turn 1: TTFT p50/p90/p99, prompt tokens
    assert rows["256–511"] == ["2", "20.0", "20.0", "20.0"]
    assert rows["stopped by a failed turn"][0] == "0" and rows["complete"][0] == "2"
    assert "Cache hits: 34.9% of the prompt tokens (768 of 2,200)" in note
