"""`harness run --engine sim` end to end, as a user runs it: a subprocess that starts the simulator, checks
conformance, sweeps across the limit, reports and gates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson

import schemas


def test_the_main_job_on_the_simulator(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "harness", "run", "--engine", "sim", "--output-dir", str(tmp_path), "--run-id", "r"]
    argv += ["--duration", "1", "--warmup", "0.5", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSCALE_")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    directory = tmp_path / "r"
    for name in ("report.html", "report.md", "summary.json", "gate.md", "gate.xml", "records.jsonl",
                 "ground_truth.jsonl", "conformance/result.json", "conformance/junit.xml"):  # fmt: skip
        assert (directory / name).is_file(), f"{name} missing; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    summary = orjson.loads((directory / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    assert [s["label"] for s in summary["steps"]] == [f"concurrency={n}" for n in (1, 8, 30, 32, 40)]
    assert summary["conformance"]["passed"] is True
    assert summary["limit"]["concurrency_limit"] == 30 and summary["limit"]["honoured"] is True
    timing = summary["timing_error_ms"]
    # The launched server's ground truth takes every arrival from the kernel (asyncio's loop, stamped sockets).
    assert timing["matched"] > 0 and timing["received_by"] == {"kernel": timing["matched"], "loop": 0, "unknown": 0}
    assert "; server arrival stamped by the kernel)" in (directory / "report.md").read_text()
    assert summary["overall"]["requests"]["errors"] == 0
    gate_md = (directory / "gate.md").read_text()
    # The gate refuses a run whose client was the bottleneck (a busy machine); otherwise the simulator passes.
    expected = 0 if summary["validity"]["verdict"] == "VALID" else 2
    assert done.returncode == expected, f"{gate_md}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    word = "PASS" if expected == 0 else "UNUSABLE"
    assert gate_md.startswith(f"## Gate: **{word}**")
    assert f"verdict:  {word} (exit {expected})" in done.stdout
    assert f"report:   {directory / 'report.html'}" in done.stdout
    page = (directory / "report.html").read_text()
    checks = orjson.loads((directory / "conformance" / "result.json").read_bytes())["checks"]
    assert len(checks) >= 80 and all(c["outcome"] == "passed" for c in checks)
    assert page.count("data:image/png;base64,") == 5 and f"conformance {len(checks)}/{len(checks)}" in page
    # The server's own metrics, scraped during the sweep, beside every step; the machine in the header.
    assert summary["server_metrics"]["failed"] == 0 and (directory / "server_metrics.jsonl").is_file()
    assert all(step["server"]["running"] is not None for step in summary["steps"])
    assert '<section id="server"><h2>Server</h2>' in page and "measured on client " in page
