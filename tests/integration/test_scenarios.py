"""The Locust scenarios end to end: `locust -f scenarios[/<file>] --headless` against the simulator, as subprocesses.

Locust monkey-patches its process with gevent, so it only ever runs in child processes here. Each run is a few
seconds long; the assertions read what Locust reports (its CSV stats) and the records each process writes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.analysis.summary import summarize
from harness.cli import main as harness_main
from harness.records.record import Record, RunFile, read_run
from harness.target.launch import LaunchedServer, launch_reference_server

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
LOCUST = [sys.executable, "-m", "locust"]
MAX_TOKENS = 6
CONVERSATION = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "Which colour is the sky on a clear day?"},
]


@pytest.fixture(scope="module")
def server() -> Iterator[LaunchedServer]:
    # Slow enough that 30 users stay well inside two CPUs, fast enough for many requests per second.
    with launch_reference_server(extra_args=["--ttft-ms", "5", "--itl-ms", "30"], startup_timeout_s=60) as launched:
        yield launched


@pytest.fixture(scope="module")
def limited_server() -> Iterator[LaunchedServer]:
    # A limit of 4 rather than 30: a handful of users steps above it at a load two shared CPUs carry. Tokens come
    # fast, since a run of the folder as a user types it keeps the default --max-tokens of 128.
    extra = ["--ttft-ms", "5", "--itl-ms", "5"]
    with launch_reference_server(concurrency_limit=4, extra_args=extra, startup_timeout_s=60) as launched:
        yield launched


def _env() -> dict[str, str]:
    # Only what the command line says: no key, URL or user class leaking in from the developer's shell.
    drop = ("ANYSCALE_API_KEY", "ANYSCALE_BASE_URL", "LOCUST_HOST", "LOCUST_LOCUSTFILE", "LOCUST_USER_CLASSES")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONUNBUFFERED": "1"}


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def locust(
    scenario: str, server: LaunchedServer, tmp_path: Path, *args: str, key: bool = True, timeout_s: float = 60
) -> tuple[int, str]:
    """Run one headless Locust to completion; its exit code and log."""
    argv = [*LOCUST, "-f", str(SCENARIOS / scenario), "--headless", "--only-summary", "-H", server.target.base_url]
    argv += ["--api-key", server.target.api_key] if key else []
    argv += ["--max-tokens", str(MAX_TOKENS), *args]
    return run(argv, tmp_path, timeout_s)


def run(argv: Sequence[str], cwd: Path, timeout_s: float = 60) -> tuple[int, str]:
    """Run a command line to completion; its exit code and log."""
    process = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = process.communicate(timeout=timeout_s)
    finally:
        _stop(process)
    return process.returncode, out.decode("utf-8", "replace")


def stats(prefix: Path) -> dict[str, dict[str, str]]:
    with Path(f"{prefix}_stats.csv").open(newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def runs(directory: Path) -> list[RunFile]:
    """Every records file of the directory, each line checked against the record schema."""
    validator = jsonschema.Draft7Validator(schemas.load("record.json"))
    files = sorted(directory.glob("records-*.jsonl"))
    for path in files:
        for line in path.read_bytes().splitlines():
            validator.validate(orjson.loads(line))
    return [read_run(path) for path in files]


def only_run(directory: Path) -> RunFile:
    found = runs(directory)
    assert len(found) == 1, [r.run.pid for r in found]
    return found[0]


def assert_streamed(run: RunFile, endpoints: Sequence[str] = ("chat",)) -> None:
    """Requests happened, streamed tokens with a TTFT, counted their tokens from usage, and met no 429."""
    assert run.run.tool == "locust"
    measured = [r for r in run.requests if not r.warmup]
    ok = [r for r in measured if r.error_kind is None]
    assert ok and len(ok) == len(measured), Counter(r.error_kind for r in measured)
    assert {r.endpoint for r in ok} == set(endpoints)
    for r in ok:
        assert r.status == 200 and r.sent_ns is not None and r.first_token_ns is not None and r.end_ns is not None
        assert r.sent_ns < r.first_token_ns <= r.end_ns
        assert r.completion_tokens == r.max_tokens and sum(r.chunk_tokens) == r.completion_tokens
        assert r.conformance_error_count == 0, r.conformance_errors
    # Cut short by the end of the test: kept, but out of the measurement.
    assert all(r.error_kind == "cancelled" for r in run.requests if r.warmup)


def assert_reported(table: dict[str, dict[str, str]], names: Sequence[str]) -> None:
    """Locust shows each request kind and its TTFT, without failures and without any 429."""
    for name in names:
        assert int(table[name]["Request Count"]) > 0, name
        assert int(table[name]["Failure Count"]) == 0, name
        assert int(table[f"{name} TTFT"]["Request Count"]) > 0, name
        assert float(table[f"{name} TTFT"]["Average Response Time"]) < float(table[name]["Average Response Time"])
    assert not [n for n in table if n.endswith(" 429")]


def test_chat_streams_and_reports_ttft_and_records_that_summarize(server: LaunchedServer, tmp_path: Path) -> None:
    code, log = locust(
        "chat.py", server, tmp_path, "-u", "4", "-r", "4", "-t", "3s", "--csv", "stats", "--records", "out",
        "--validate-chunks",
    )  # fmt: skip
    assert code == 0, log
    assert_reported(stats(tmp_path / "stats"), ["chat"])
    run = only_run(tmp_path / "out")
    assert_streamed(run)
    assert all(r.chunks_validated > 0 for r in run.requests if r.error_kind is None)
    assert [(s.step, s.label, s.concurrency) for s in run.steps] == [(0, "4 users", 4)]
    overall = summarize(run)["overall"]
    assert overall["latency_ms"]["ttft"]["count"] == overall["requests"]["ok"] > 0
    assert overall["throughput"]["output_tokens_per_s"] > 0


def _conversation_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(orjson.dumps({"messages": CONVERSATION}) + b"\n")
    return path


def test_completion_sends_prompts_formatted_with_the_models_template(server: LaunchedServer, tmp_path: Path) -> None:
    prompts = _conversation_file(tmp_path)
    code, log = locust(
        "completion.py", server, tmp_path, "-u", "2", "-r", "2", "-t", "2s", "--csv", "stats", "--records", "out",
        "--prompts", str(prompts),
    )  # fmt: skip
    assert code == 0, log
    assert_reported(stats(tmp_path / "stats"), ["completion"])
    run = only_run(tmp_path / "out")
    assert_streamed(run, ["completion"])
    # Llama 3's template: the conversation rendered with its special tokens is 33 tokens; the bare text is 17.
    assert {r.prompt_tokens for r in run.requests if r.error_kind is None} == {33}


def test_mixed_sends_every_kind_and_the_completions_match_the_chat_prompts(
    server: LaunchedServer, tmp_path: Path
) -> None:
    prompts = _conversation_file(tmp_path)
    code, log = locust(
        "mixed.py", server, tmp_path, "-u", "6", "-r", "6", "-t", "4s", "--csv", "stats", "--records", "out",
        "--prompts", str(prompts),
    )  # fmt: skip
    assert code == 0, log
    table = stats(tmp_path / "stats")
    assert_reported(table, ["chat", "completion"])
    run = only_run(tmp_path / "out")
    assert_streamed(run, ["chat", "completion"])
    ok = [r for r in run.requests if r.error_kind is None]
    assert {r.max_tokens for r in ok} <= {MAX_TOKENS, 4 * MAX_TOKENS}
    # The server formats chat itself; the scenario formats completions: the same conversation, the same tokens.
    assert {(r.endpoint, r.prompt_tokens) for r in ok} == {("chat", 33), ("completion", 33)}


def test_session_users_hold_conversations_whose_turns_carry_their_history(
    server: LaunchedServer, tmp_path: Path
) -> None:
    code, log = locust(
        "session.py", server, tmp_path, "-u", "3", "-r", "3", "-t", "4s", "--csv", "stats", "--records", "out",
        "--turns", "3", "--think-time", "0.05", "--input-tokens", "20",
    )  # fmt: skip
    assert code == 0, log
    assert_reported(stats(tmp_path / "stats"), ["session"])
    run = only_run(tmp_path / "out")
    assert_streamed(run)
    turns: dict[int | None, list[Record]] = {}
    for r in run.requests:
        if not r.warmup:
            turns.setdefault(r.session, []).append(r)
    complete = [sorted(t, key=lambda r: r.turn or 0) for t in turns.values() if len(t) == 3]
    assert complete and all(r.session_turns == 3 for t in complete for r in t)
    for first, second, third in complete:
        assert (first.turn, second.turn, third.turn) == (0, 1, 2)
        # Each turn's prompt is the one before, its answer and a new question of 20 words (the simulator's tokens).
        assert first.history_tokens == 0 and first.prompt_tokens is not None and first.completion_tokens is not None
        assert second.history_tokens == first.prompt_tokens + first.completion_tokens
        assert second.prompt_tokens is not None and second.prompt_tokens > second.history_tokens + 20
        assert third.history_tokens == second.prompt_tokens + (second.completion_tokens or 0)
    figures = summarize(run).get("traffic")
    assert figures is not None and figures["workload"] == "sessions" and figures["sessions"] is not None
    assert figures["sessions"]["complete"] == len(complete) and figures["turns"] is not None
    assert [t["turn"] for t in figures["turns"]] == [0, 1, 2]


def test_the_step_shape_meets_429s_only_above_30_users_and_names_them_apart(
    server: LaunchedServer, tmp_path: Path
) -> None:
    code, log = locust(
        "step_limit.py", server, tmp_path, "--step-s", "1.5", "--csv", "stats", "--records", "out",
    )  # fmt: skip
    assert code == 0, log
    table = stats(tmp_path / "stats")
    assert int(table["chat 429"]["Request Count"]) > 0
    assert int(table["chat 429"]["Failure Count"]) == int(table["chat"]["Failure Count"]) == 0
    assert int(table["chat TTFT"]["Request Count"]) > 0
    run = only_run(tmp_path / "out")
    assert [(s.label, s.concurrency) for s in run.steps] == [(f"{n} users", n) for n in (10, 20, 30, 40, 50)]
    users = {s.step: s.concurrency for s in run.steps}
    measured = [r for r in run.requests if not r.warmup]
    limited = Counter(users[r.step] for r in measured if r.error_kind == "rate_limited")
    assert set(limited) == {40, 50}, limited
    assert all(r.status == 429 and r.retry_after_s == 1.0 for r in measured if r.error_kind == "rate_limited")
    assert {r.error_kind for r in measured} == {None, "rate_limited"}
    served = Counter(users[r.step] for r in measured if r.error_kind is None)
    assert set(served) == {10, 20, 30, 40, 50}


def test_the_spike_is_three_steps_within_the_limit(server: LaunchedServer, tmp_path: Path) -> None:
    code, log = locust(
        "spike.py", server, tmp_path, "--spike-baseline-users", "2", "--spike-users", "8", "--spike-baseline-s", "1.5",
        "--spike-s", "1.5", "--csv", "stats", "--records", "out",
    )  # fmt: skip
    assert code == 0, log
    assert_reported(stats(tmp_path / "stats"), ["chat"])
    run = only_run(tmp_path / "out")
    assert_streamed(run)
    labels = [(s.label, s.concurrency) for s in run.steps]
    assert labels == [("baseline 2 users", 2), ("spike 8 users", 8), ("recovery 2 users", 2)]
    assert {r.step for r in run.requests if r.error_kind is None} == {0, 1, 2}


def test_the_soak_records_one_step_per_window(server: LaunchedServer, tmp_path: Path) -> None:
    code, log = locust(
        "soak.py", server, tmp_path, "-u", "3", "-r", "3", "-t", "3s", "--soak-window-s", "1.5", "--csv", "stats",
        "--records", "out",
    )  # fmt: skip
    assert code == 0, log
    assert_reported(stats(tmp_path / "stats"), ["chat"])
    run = only_run(tmp_path / "out")
    assert_streamed(run)
    assert [(s.label, s.concurrency) for s in run.steps] == [("window 1 (3 users)", 3), ("window 2 (3 users)", 3)]


def test_without_an_api_key_the_run_stops_with_a_message(server: LaunchedServer, tmp_path: Path) -> None:
    code, log = locust("chat.py", server, tmp_path, "-u", "1", "-r", "1", "-t", "3s", key=False)
    assert code == 2
    assert "no API key: give --api-key or set ANYSCALE_API_KEY" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_master_with_two_workers_merges_both_workers_records(server: LaunchedServer, tmp_path: Path) -> None:
    port = str(_free_port())
    chat = str(SCENARIOS / "chat.py")
    # Workers get no options of their own: the key and --max-tokens must come from the master.
    worker = [*LOCUST, "-f", chat, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        for i in range(2):
            log = (tmp_path / f"worker-{i}.log").open("wb")
            logs.append(log)
            processes.append(subprocess.Popen(worker, cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT))
        code, log_text = locust(
            "chat.py", server, tmp_path, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "--expect-workers", "2", "-u", "4", "-r", "4", "-t", "3s", "--csv", "stats", "--records", "out",
        )  # fmt: skip
        for process in processes:
            process.wait(timeout=20)
    finally:
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()
    assert code == 0, log_text
    assert [p.returncode for p in processes] == [0, 0]
    assert_reported(stats(tmp_path / "stats"), ["chat"])
    found = runs(tmp_path / "out")
    assert len(found) == 2 and len({r.run.pid for r in found}) == 2
    assert len({r.run.run_id for r in found}) == 1  # one run, named by the master
    for run in found:
        assert_streamed(run)
        assert run.run.config["worker"] is True
        assert {r.max_tokens for r in run.requests} == {MAX_TOKENS}
        assert [(s.step, s.label, s.concurrency) for s in run.steps] == [(0, "4 users", 2)]  # each worker's share
    assert "output tokens (from usage, successful requests, all workers)" in log_text
    # `harness report` merges the workers' files into one run and reports it.
    assert harness_main(["report", str(tmp_path / "out")]) == 0
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert sorted(summary["sources"]) == sorted(p.name for p in (tmp_path / "out").glob("records-*.jsonl"))
    assert [(s["label"], s["concurrency"]) for s in summary["steps"]] == [("4 users", 4)]
    measured = sum(1 for run in found for r in run.requests if not r.warmup)
    assert summary["overall"]["requests"]["total"] == summary["overall"]["requests"]["ok"] == measured
    assert summary["overall"]["latency_ms"]["ttft"]["count"] == measured


def target_args(server: LaunchedServer) -> list[str]:
    return ["-H", server.target.base_url, "--api-key", server.target.api_key]


def test_the_folder_runs_steady_chat_by_default_and_meets_429s_above_the_limit(
    limited_server: LaunchedServer, tmp_path: Path
) -> None:
    """`locust -f scenarios` as a user types it, from the repository's root: ChatUser alone, no shape."""
    code, log = run(
        [*LOCUST, "-f", "scenarios", "--headless", "-u", "6", "-r", "6", "-t", "3s", *target_args(limited_server),
         "--csv", str(tmp_path / "stats"), "--records", str(tmp_path / "out")],
        ROOT,
    )  # fmt: skip
    assert code == 0, log
    assert "scenario: ChatUser (chat.py), no load shape: -u, -r and -t set the load" in log
    assert 'All users spawned: {"ChatUser": 6} (6 total users)' in log
    table = stats(tmp_path / "stats")
    assert set(table) == {"chat", "chat TTFT", "chat 429", "Aggregated"}  # no other scenario's requests
    ttft, chat, limited = table["chat TTFT"], table["chat"], table["chat 429"]
    assert int(ttft["Request Count"]) > 0 and int(chat["Request Count"]) > 0
    assert int(ttft["Failure Count"]) == int(chat["Failure Count"]) == int(limited["Failure Count"]) == 0
    # The simulator's first token comes no sooner than its --ttft-ms, and before the stream's end.
    assert 5 <= float(ttft["Min Response Time"]) <= float(ttft["Average Response Time"])
    assert float(ttft["Average Response Time"]) < float(chat["Average Response Time"])
    assert int(limited["Request Count"]) > 0  # 6 users, 4 slots
    recorded = only_run(tmp_path / "out")
    assert (recorded.run.config["shape"], recorded.run.config["user_classes"]) == (None, ["ChatUser"])
    assert [(s.label, s.concurrency) for s in recorded.steps] == [("6 users", 6)]
    measured = [r for r in recorded.requests if not r.warmup]
    assert {r.error_kind for r in measured} == {None, "rate_limited"}
    assert {r.endpoint for r in measured} == {"chat"}


def test_naming_a_staged_scenarios_user_class_runs_it_with_its_own_shape(
    limited_server: LaunchedServer, tmp_path: Path
) -> None:
    code, log = run(
        [*LOCUST, "-f", "scenarios", "StepLimitUser", "--headless", *target_args(limited_server), "--max-tokens",
         str(MAX_TOKENS), "--step-users", "2,6", "--step-s", "1.5", "--input-tokens", "fixed:32", "--records",
         str(tmp_path / "out")],
        ROOT,
    )  # fmt: skip
    assert code == 0, log
    assert "scenario: StepLimitUser (step_limit.py), load shape StepLimitShape" in log
    recorded = only_run(tmp_path / "out")
    assert (recorded.run.config["shape"], recorded.run.config["user_classes"]) == ("StepLimitShape", ["StepLimitUser"])
    assert recorded.run.config["prompts"]["input_tokens"] == "32"  # as harness bench writes it
    assert [(s.label, s.concurrency) for s in recorded.steps] == [("2 users", 2), ("6 users", 6)]
    users = {s.step: s.concurrency for s in recorded.steps}
    measured = [r for r in recorded.requests if not r.warmup]
    assert {users[r.step] for r in measured if r.error_kind is None} == {2, 6}
    assert {users[r.step] for r in measured if r.error_kind == "rate_limited"} == {6}  # above the limit of 4 only


def test_user_classes_of_two_staged_scenarios_are_refused_before_anything_runs(
    limited_server: LaunchedServer, tmp_path: Path
) -> None:
    code, log = run(
        [*LOCUST, "-f", str(SCENARIOS), "StepLimitUser", "SpikeUser", "--headless", *target_args(limited_server),
         "--records", "out"],
        tmp_path,
    )  # fmt: skip
    assert code == 2, log
    refusals = [line for line in log.splitlines() if "cannot run the LLM scenario" in line]
    assert len(refusals) == 1, log
    assert refusals[0].endswith(
        "SpikeUser (spike.py) and StepLimitUser (step_limit.py) are of different staged scenarios, each with a load "
        "shape of its own, and a run has one shape: choose the user classes of one scenario"
    )
    assert not (tmp_path / "out").exists()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _wait_for(what: str, probe: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.2)


def _serving(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def test_the_class_picker_lists_every_scenario_and_refuses_a_shape_with_other_users(
    limited_server: LaunchedServer, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [*LOCUST, "-f", str(SCENARIOS), "--class-picker", "--web-host", "127.0.0.1", "--web-port", str(port),
            *target_args(limited_server), "--max-tokens", str(MAX_TOKENS)]  # fmt: skip
    log_path = tmp_path / "locust.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for("web UI", lambda: _serving(base + "/"))
        page = _get(base + "/").decode()
        found = re.search(r"window\.templateArgs = (.*)$", page, re.MULTILINE)
        assert found is not None, page[:2000]
        template = json.loads(found.group(1))
        assert template["show_userclass_picker"] is True
        assert template["available_user_classes"] == [
            "ChatUser", "CompletionUser", "MixedUser", "SessionUser", "SoakUser", "SpikeUser", "StepLimitUser",
        ]  # fmt: skip
        assert template["available_shape_classes"] == ["Default", "SoakShape", "SpikeShape", "StepLimitShape"]
        # Start the step shape with chat users: refused as the test starts; the test stops and the UI stays up.
        form = {"user_count": "1", "spawn_rate": "1", "user_classes": "ChatUser", "shape_class": "StepLimitShape"}
        request = urllib.request.Request(base + "/swarm", data=urllib.parse.urlencode(form).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["success"] is True  # Locust's answer: it has started
        refusal = (
            "cannot run the LLM scenario: StepLimitShape is the load shape of step_limit.py, not of ChatUser "
            "(chat.py): choose the user classes of step_limit.py alone, or the Default shape"
        )
        _wait_for("refusal", lambda: refusal in log_path.read_text())
        _wait_for("stop", lambda: json.loads(_get(base + "/stats/requests"))["state"] == "stopped")
        requests = json.loads(_get(base + "/stats/requests"))["stats"]
        assert [s for s in requests if s["name"] != "Aggregated" and s["num_requests"]] == []  # nothing was sent
        assert process.poll() is None
    finally:
        _stop(process)
