"""Real traffic end to end against the simulator (`harness bench` starting it, or a server started here): multi-turn
sessions (a throttled turn stops its session, or is retried), shared prefixes met by the prefix cache, every trace
format replayed at its times, a malformed trace refused before anything is sent, and the report's sections."""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.cli import main
from harness.records.record import Record, RunFile, read_run
from harness.target.launch import LaunchedServer, launch_reference_server

FAST = ["--sim-arg=--ttft-ms=5", "--sim-arg=--itl-ms=2", "--no-progress", "--run-id", "run"]


def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[dict[str, Any], RunFile]:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    code = main(["bench", "--output-dir", str(tmp_path), *FAST, *argv])
    assert code == 0
    directory = tmp_path / "run"
    validator = jsonschema.Draft7Validator(schemas.load("record.json"))
    for line in (directory / "records.jsonl").read_bytes().splitlines():
        validator.validate(orjson.loads(line))
    assert main(["report", str(directory)]) == 0  # summary.json checked against its schema as it is written
    return orjson.loads((directory / "summary.json").read_bytes()), read_run(directory / "records.jsonl")


def sessions_of(run: RunFile) -> dict[int, list[Record]]:
    found: dict[int, list[Record]] = {}
    for r in run.requests:
        if r.session is not None and not r.warmup:
            found.setdefault(r.session, []).append(r)
    return {n: sorted(turns, key=lambda r: r.turn or 0) for n, turns in found.items()}


def test_a_throttled_turn_stops_its_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Six users against a limit of 3: turns are refused with 429 from the first instant, and not retried.
    argv = ["--concurrency", "6", "--sim-concurrency-limit", "3", "--turns", "3", "--requests", "12", "--warmup", "0"]
    summary, run = bench(tmp_path, monkeypatch, *argv, "--input-tokens", "16", "--output-tokens", "8")
    played = sessions_of(run)
    stopped = [turns for turns in played.values() if turns[-1].error_kind is not None]
    assert stopped, "no turn was refused"
    for turns in played.values():
        assert [r.turn for r in turns] == list(range(len(turns)))
        assert all(r.error_kind is None for r in turns[:-1])  # nothing is sent after a failed turn
        last = turns[-1]
        assert last.error_kind in (None, "rate_limited")
        assert len(turns) == 3 or last.error_kind == "rate_limited"
    figures = summary["traffic"]["sessions"]
    assert (figures["count"], figures["stopped"]) == (len(played), len(stopped))
    assert figures["complete"] == sum(1 for t in played.values() if len(t) == 3 and t[-1].error_kind is None)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h2>TTFT by turn</h2>" in page and "<h2>Sessions</h2>" in page


def test_with_retries_a_throttled_turn_waits_and_its_session_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, run = bench(tmp_path, monkeypatch, "--concurrency", "4", "--sim-concurrency-limit", "2", "--turns", "2",
                         "--requests", "6", "--warmup", "0", "--on-429", "retry", "--input-tokens", "16",
                         "--output-tokens", "8")  # fmt: skip
    played = sessions_of(run)
    assert len(played) == 6 and all(len(turns) == 2 for turns in played.values())
    assert all(r.error_kind is None for turns in played.values() for r in turns)
    assert any(r.attempts > 1 for turns in played.values() for r in turns)  # some turn waited for a slot
    assert summary["traffic"]["sessions"]["complete"] == 6


def test_an_open_loop_of_sessions_over_shared_prefixes_meets_the_prefix_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, run = bench(tmp_path, monkeypatch, "--profile", "openai", "--session-rate", "20", "--turns", "3",
                         "--think-time", "uniform:0,0.05", "--requests", "8", "--warmup", "0",
                         "--shared-prefix-tokens", "200", "--prefix-groups", "2", "--input-tokens", "20",
                         "--output-tokens", "8", "--session-header", "x-session-id")  # fmt: skip
    played = sessions_of(run)
    assert len(played) == 8 and all(len(turns) == 3 for turns in played.values())
    assert {turns[0].prefix_group for turns in played.values()} == {0, 1}
    for turns in played.values():
        assert turns[0].history_tokens == 0 and turns[0].user is None
        for before, after in itertools.pairwise(turns):
            assert before.prompt_tokens is not None and before.completion_tokens is not None
            assert after.history_tokens == before.prompt_tokens + before.completion_tokens
            # The turn before it, whole blocks of it, is in the simulator's cache (16-token blocks).
            assert after.cached_tokens is not None and after.cached_tokens >= before.prompt_tokens - 16
    later_firsts = sorted((turns[0] for turns in played.values()), key=lambda r: r.scheduled_ns)[2:]
    assert all((r.cached_tokens or 0) >= 192 for r in later_firsts)  # its group's prefix, cached by an earlier one
    traffic = summary["traffic"]
    assert traffic["workload"] == "sessions" and traffic["cache"]["prefix_groups"] == 2
    assert traffic["cache"]["hit_share"] > 0.5
    assert [t["turn"] for t in traffic["turns"]] == [0, 1, 2]
    assert summary["config"]["workload"]["shared_prefix"] == {"tokens": 200, "groups": 2}
    assert summary["steps"][0]["label"] == "session_rate=20/s,poisson"


def test_shared_prefixes_without_sessions_are_cached_across_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, run = bench(tmp_path, monkeypatch, "--profile", "openai", "--concurrency", "2", "--requests", "20",
                         "--warmup", "0", "--shared-prefix-tokens", "90", "--input-tokens", "120",
                         "--output-tokens", "4")  # fmt: skip
    ok = [r for r in run.requests if r.error_kind is None]
    assert len(ok) == 20 and {r.prefix_group for r in ok} == {0}
    assert all(r.prompt_tokens == 120 for r in ok)  # calibrated to the simulator's tokens, the prefix included
    # The chat template's 11 tokens and the prefix's 90 are six whole blocks, cached once the first request came.
    assert sorted(r.cached_tokens for r in ok) == [0] + [96] * 19
    assert summary["traffic"]["workload"] == "requests" and summary["traffic"]["turns"] is None


def write_traces(tmp_path: Path) -> dict[str, Path]:
    mooncake = tmp_path / "mooncake.jsonl"
    mooncake.write_text("".join(json.dumps({"timestamp": 50 * i, "input_length": 600, "output_length": 4 + i % 3,
                                            "hash_ids": [0, 1 + i % 2]}) + "\n" for i in range(20)))  # fmt: skip
    azure = tmp_path / "azure.csv"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:{46 + i // 10:02d}.{i % 10}000000,{40 + i},{5}\n" for i in range(20)))  # fmt: skip
    burst = tmp_path / "burst.csv"
    rows = (f"{0.05 * i:.2f},ChatGPT,{30 + i},{0 if i == 3 else 6},{36 + i},Conversation log\n" for i in range(20))
    burst.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + "".join(rows))
    return {"mooncake": mooncake, "azure": azure, "burstgpt": burst}


@pytest.mark.parametrize("fmt", ["mooncake", "azure", "burstgpt"])
def test_each_trace_format_is_replayed_at_its_times_with_its_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    path = write_traces(tmp_path)[fmt]
    summary, run = bench(tmp_path, monkeypatch, "--profile", "openai", "--trace", str(path), "--trace-format", fmt,
                         "--time-scale", "0.5")  # fmt: skip
    ok = sorted((r for r in run.requests if r.error_kind is None), key=lambda r: r.scheduled_ns)
    assert len(ok) == 20 and not any(r.warmup for r in run.requests)
    due = [(r.scheduled_ns - ok[0].scheduled_ns) / 1e6 for r in ok]
    spacing = {"mooncake": 25.0, "azure": 50.0, "burstgpt": 25.0}[fmt]  # the trace's gaps, twice as fast
    assert due == pytest.approx([spacing * i for i in range(20)], abs=0.01)
    assert all(r.sent_ns is not None and r.sent_ns >= r.scheduled_ns for r in ok)
    assert all(r.completion_tokens == r.max_tokens for r in ok)  # the trace's output lengths, exactly
    if fmt == "mooncake":
        assert [r.max_tokens for r in ok] == [4 + i % 3 for i in range(20)]
        assert all(abs((r.prompt_tokens or 0) - 600) <= 3 for r in ok)
        assert all((r.cached_tokens or 0) >= 512 for r in ok[2:])  # blocks 0, and 1 or 2, seen before
    if fmt == "burstgpt":
        assert ok[3].max_tokens == 1  # a response of 0 tokens (a failed request) is replayed as 1
    replay = summary["traffic"]["replay"]
    assert (replay["requests"], replay["sent"]) == (20, 20)
    assert summary["traffic"]["workload"] == "trace" and summary["steps"][0]["arrival"] == "trace"
    assert summary["steps"][0]["label"] == f"trace={path.name},x0.5"
    assert "<h2>Trace replay</h2>" in (tmp_path / "run" / "report.html").read_text()


@pytest.fixture(scope="module")
def simulator() -> Iterator[LaunchedServer]:
    with launch_reference_server(extra_args=["--ttft-ms", "1", "--itl-ms", "1"], startup_timeout_s=60) as launched:
        yield launched


def requests_served(server: LaunchedServer) -> float:
    with urllib.request.urlopen(server.target.root_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("llm_requests_total{") and '"/v1/' in line]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_trace_with_a_malformed_line_is_refused_before_anything_is_sent(
    simulator: LaunchedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bad.jsonl"
    good = {"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}
    trace.write_text(json.dumps(good) + "\n" + json.dumps(good)[:-1] + ', "hash_ids": "1"\n' + json.dumps(good) + "\n")
    target = simulator.target
    before = requests_served(simulator)
    code = main(["bench", "--base-url", target.base_url, "--api-key", target.api_key, "--trace", str(trace),
                 "--trace-format", "mooncake", "--output-dir", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{trace}:2: expected a JSON object, got text that is not JSON" in err
    assert not (tmp_path / "out").exists()
    assert requests_served(simulator) == before  # not even the preflight's request


def test_sharegpt_conversations_are_replayed_turn_by_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    talk = [{"from": "human", "value": f"Question {k} about the weather today?"} for k in range(4)]
    for k in range(3, 0, -1):
        talk.insert(k, {"from": "gpt", "value": "word " * (5 * k)})  # the file's answers: 5, 10 and 15 words
    conversations = [{"conversations": talk}, {"conversations": talk[:3]}]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conversations))
    summary, run = bench(tmp_path, monkeypatch, "--sharegpt", str(path), "--turns", "all", "--concurrency", "1",
                         "--requests", "2", "--warmup", "0")  # fmt: skip
    played = sorted(sessions_of(run).values(), key=len)
    assert [len(turns) for turns in played] == [2, 4]  # every user turn of each conversation
    assert [r.max_tokens for r in played[1]] == [5, 10, 15, 128]  # the file's answers' lengths; the last had none
    assert all(r.completion_tokens == r.max_tokens for turns in played for r in turns)
    for before, after in itertools.pairwise(played[1]):
        assert after.history_tokens == (before.prompt_tokens or 0) + (before.completion_tokens or 0)
        assert after.prompt_tokens is not None and after.prompt_tokens > (after.history_tokens or 0)
    assert summary["config"]["workload"] == {"kind": "sessions", "turns": None, "think_s": "0", "header": None,
                                             "shared_prefix": None}  # fmt: skip
