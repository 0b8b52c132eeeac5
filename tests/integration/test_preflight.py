"""The preflight through the commands a user types: `harness bench`, `harness check`, `harness run` and the Locust
scenarios. A target they cannot run against stops them with exit code 2 and one line that says what failed and
how to fix it, before anything is written; a base URL missing its /v1 is fixed with a notice.

The targets: the simulator (with fault injection), a port nobody listens on, a name that no DNS resolves, and a
strict OpenAI-compatible server that refuses `ignore_eos`/`min_tokens` (`strict_server`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.record import read_run
from harness.target.launch import DEFAULT_MODEL, LaunchedServer, free_port, launch_reference_server

from .strict_server import KEY as STRICT_KEY
from .strict_server import MODEL as STRICT_MODEL
from .strict_server import OTHER_MODEL, Strict, strict_server

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 60  # a command that takes longer than this hangs: the test fails instead of waiting


@pytest.fixture(scope="module")
def sim() -> Iterator[LaunchedServer]:
    with launch_reference_server(extra_args=["--enable-faults", "--ttft-ms=1", "--itl-ms=1"], keys=1) as server:
        yield server


@pytest.fixture(scope="module")
def strict() -> Iterator[Strict]:
    with strict_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_target_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)


def command(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """`harness ARGV` in this process, on a thread so that a hang fails the test; exit code, stdout, stderr."""
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert codes, f"harness {' '.join(argv[:1])} did not finish within {HANG_S} s"
    out, err = capsys.readouterr()
    return codes[0], out, err


def target_args(name: str, base_url: str, key: str, model: str | None, out: Path) -> list[str]:
    """The least each command needs to run against `base_url`, writing under `out` only."""
    argv = ["--base-url", base_url, "--api-key", key] + (["--model", model] if model else [])
    if name == "check":
        return ["check", *argv, "--output-dir", str(out / "conformance"), "--run-id", "r", "-q"]
    if name == "run":
        return ["run", *argv, "--output-dir", str(out), "--run-id", "r", "--no-progress", "--no-conformance"]
    return ["bench", *argv, "--output-dir", str(out), "--run-id", "r", "--no-progress", "--requests", "3"]


def assert_refused(code: int, err: str, name: str, expected: str, out: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"harness {name}: ") and expected in lines[0], lines[0]
    assert not out.exists() or list(out.iterdir()) == [], list(out.rglob("*"))  # no report of a run that never ran


@pytest.mark.parametrize("name", ["bench", "check", "run"])
@pytest.mark.parametrize(
    "case",
    ["unreachable", "dns", "tls", "wrong_key", "unknown_model", "404_not_fixed_by_v1", "not_a_model_list"],
)
def test_a_target_that_cannot_be_run_against_is_one_line_and_exit_2(
    sim: LaunchedServer, strict: Strict, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, case: str
) -> None:
    t = sim.target
    port = free_port()
    sim_port = t.root_url.rsplit(":", 1)[1]
    base, key, model, expected = {
        "unreachable": (f"http://127.0.0.1:{port}/v1", t.api_key, None, f"cannot connect to 127.0.0.1:{port}: "
                        "connection refused; is the server running on that port?"),
        "dns": ("http://preflight-test.invalid/v1", t.api_key, None,
                "cannot resolve preflight-test.invalid (DNS: "),
        "tls": (f"https://127.0.0.1:{sim_port}/v1", t.api_key, None, f"TLS with 127.0.0.1:{sim_port} failed ("),
        "wrong_key": (t.base_url, "esecret_wrong", None,
                      f"{t.base_url}/models refused the API key (HTTP 401): check --api-key: "),
        "unknown_model": (t.base_url, t.api_key, "no/such-model",
                          f"model no/such-model is not served; the target lists: {DEFAULT_MODEL} (choose with "
                          "--model)"),
        "404_not_fixed_by_v1": (f"{t.root_url}/api", t.api_key, None,
                                f"{t.root_url}/api answers 404 at /models; did you mean {t.root_url}/v1?"),
        "not_a_model_list": (f"{strict.root_url}/junk", STRICT_KEY, None,
                             f"{strict.root_url}/junk/models did not answer with an OpenAI model list"),
    }[case]  # fmt: skip
    code, _, err = command(capsys, target_args(name, base, key, model, tmp_path / "out"))
    assert_refused(code, err, name, expected, tmp_path / "out")


def test_bench_on_a_base_url_without_v1_goes_on_at_v1_with_a_notice(
    sim: LaunchedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = sim.target.root_url
    code, _, err = command(capsys, target_args("bench", root, sim.target.api_key, None, tmp_path))
    assert code == 0, err
    notice = f"notice: {root} answers 404 at /models but {root}/v1/models answers: using {root}/v1"
    assert notice in err.splitlines()
    run = read_run(tmp_path / "r" / "records.jsonl")
    assert run.run.target["base_url"] == f"{root}/v1" and run.run.target["model"] == DEFAULT_MODEL
    assert run.run.config["preflight"] == {"base_url": f"{root}/v1", "notices": [notice[8:]], "refused_fields": []}
    assert [r.error_kind for r in run.requests if not r.warmup] == [None] * 3


def test_check_on_a_base_url_without_v1_runs_the_suite_at_v1(sim: LaunchedServer, tmp_path: Path) -> None:
    root = sim.target.root_url
    argv = [sys.executable, "-m", "harness", "check", "--base-url", root, "--api-key", sim.target.api_key]
    argv += ["-k", "test_model_list", "--output-dir", str(tmp_path), "-q"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"notice: {root} answers 404 at /models but {root}/v1/models answers: using {root}/v1" in done.stderr
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["target"]["base_url"] == f"{root}/v1"
    assert {c["check"]: c["outcome"] for c in result["checks"]} == {"test_model_list": "passed"}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("no_done", "/chat/completions failed: the stream ended without data: [DONE]; the body: data: {"),
        ("error_500", '/chat/completions failed: HTTP 500: {"error":{"message":"Injected fault: internal error."'),
    ],
)
def test_a_test_request_that_fails_stops_bench_with_its_status_and_body(
    sim: LaunchedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str, expected: str
) -> None:
    argv = target_args("bench", sim.target.base_url, sim.target.api_key, None, tmp_path)
    code, _, err = command(capsys, [*argv, "--header", f"x-fault: {fault}"])
    assert_refused(code, err, "bench", f"the test request to {sim.target.base_url}{expected}", tmp_path)


def test_a_failed_calibration_stops_bench(
    sim: LaunchedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = target_args("bench", sim.target.base_url, sim.target.api_key, None, tmp_path)
    code, _, err = command(capsys, [*argv, "--no-preflight", "--header", "x-fault: error_500"])
    expected = "calibration request failed: http_5xx: 500: Injected fault: internal error. (the run would fail alike"
    assert_refused(code, err, "bench", expected, tmp_path)


REFUSED = 'the target refuses ignore_eos, min_tokens (HTTP 422: {"detail": [{"type": "extra_forbidden"'


def test_bench_stops_on_a_server_that_refuses_ignore_eos_and_names_the_fix(
    strict: Strict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = target_args("bench", strict.base_url, STRICT_KEY, None, tmp_path)
    code, _, err = command(capsys, argv)
    assert_refused(code, err, "bench", REFUSED, tmp_path)
    assert err.rstrip().endswith("; run again with --no-ignore-eos (output lengths are then the model's own)")
    code, _, err = command(capsys, [*argv, "--no-ignore-eos"])  # the fix it names works
    assert code == 0, err
    run = read_run(tmp_path / "r" / "records.jsonl")
    assert run.run.target["model"] == STRICT_MODEL  # the first listed
    assert [r.error_kind for r in run.requests if not r.warmup] == [None] * 3


def test_run_goes_on_without_the_refused_fields_and_records_it(
    strict: Strict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = target_args("run", strict.base_url, STRICT_KEY, OTHER_MODEL, tmp_path)
    argv += ["--sweep", "1", "--duration", "0.5", "--warmup", "0", "--input-tokens", "8", "--output-tokens", "3"]
    refused_before = len(strict.refused)
    code, out, err = command(capsys, argv)
    assert f"(exit {code})" in out, out + err  # the gate's verdict: the run went all the way
    notices = [line for line in err.splitlines() if line.startswith("notice: ")]
    assert len(notices) == 1 and notices[0].startswith(f"notice: {REFUSED}"), err
    assert notices[0].endswith(": the load goes without them, so output lengths are the model's own")
    assert strict.refused[refused_before:] == [["ignore_eos", "min_tokens"]]  # the probe's, and no request after it
    run = read_run(tmp_path / "r" / "records.jsonl")
    assert run.run.config["preflight"]["refused_fields"] == ["ignore_eos", "min_tokens"]
    assert run.run.config["prompts"]["exact_lengths"] is False
    measured = [r for r in run.requests if not r.warmup]
    assert measured and [r.error_kind for r in measured] == [None] * len(measured)
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")  # the report says it, by its target
    assert "the target refuses ignore_eos, min_tokens (HTTP 422: " in page and "the load goes without them" in page


def _env() -> dict[str, str]:
    drop = ("ANYSCALE_API_KEY", "ANYSCALE_BASE_URL", "LOCUST_HOST", "LOCUST_LOCUSTFILE")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def locust(tmp_path: Path, host: str, key: str) -> tuple[int, str]:
    argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "scenarios" / "chat.py"), "--headless", "--only-summary"]
    argv += ["-H", host, "--api-key", key, "-u", "1", "-r", "1", "-t", "20s", "--records", "out"]
    done = subprocess.run(argv, capture_output=True, timeout=HANG_S, env=_env(), cwd=tmp_path)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("case", ["refuses_ignore_eos", "unreachable"])
def test_a_locust_scenario_that_cannot_run_exits_2_with_the_line(strict: Strict, tmp_path: Path, case: str) -> None:
    port = free_port()
    host, expected = {
        "refuses_ignore_eos": (strict.root_url, f"{REFUSED}"),
        "unreachable": (f"http://127.0.0.1:{port}", f"cannot connect to 127.0.0.1:{port}: connection refused"),
    }[case]
    code, log = locust(tmp_path, host, STRICT_KEY)
    assert code == 2, log
    refusals = [line for line in log.splitlines() if "cannot run the LLM scenario: " in line]
    assert len(refusals) == 1 and expected in refusals[0], log
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("records*.jsonl")), log
