"""The soak benchmark's short form (`python -m benchmarks.soak --quick`): a mix of normal streams, disconnects, client
timeouts and simulator faults leaves nothing behind — no slot, no engine request, no socket, no memory growth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_soak_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["result"]
    assert all(result["checks"].values()), result["checks"]
    assert result["requests"] == 1200
    assert set(result["mix"]) == {"stream", "complete", "disconnect", "timeout", "fault", "abandoned_body", "not_json"}
    assert result["in_flight"] == {"cli-1": 0, "cli-2": 0}
    engine = result["engine"]
    assert engine["running"] == engine["waiting"] == 0
    assert engine["aborted"] > 0 and engine["finished"] > 0  # both ends of a request were exercised
    assert result["sockets"]["end"] <= result["sockets"]["baseline"] < result["sockets"]["peak"]
    assert result["rss_kib"]["growth"] < 0.10
    statuses = result["server_statuses"]
    assert {"200", "429", "499", "500"} <= set(statuses)  # served, limited, abandoned, faulted
