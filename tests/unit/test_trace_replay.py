"""Trace files: the three formats read into requests in time order, every malformed line refused with its file, its
line and what was expected, the replay's schedule (start, stop, time scale) and its prompts (the same block id, the
same words)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.load import traces
from harness.load.plan import StepPlan, offsets
from harness.load.prompts import Calibration


def mooncake(path: Path, *rows: dict[str, object] | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def row(at_ms: int, ids: list[int], length: int = 600, out: int = 8) -> dict[str, object]:
    return {"timestamp": at_ms, "input_length": length, "output_length": out, "hash_ids": ids}


def test_a_mooncake_trace_is_read_in_time_order_with_its_blocks(tmp_path: Path) -> None:
    path = mooncake(tmp_path / "t.jsonl", row(1500, [0, 2]), "", row(0, [0, 1], 1000, 0), row(750, []))
    found = traces.read(path, "mooncake")
    assert [r.at_s for r in found] == [0.0, 0.75, 1.5]
    assert [r.line for r in found] == [3, 4, 1]  # the blank line counts
    assert found[0] == traces.TraceRequest(0.0, 1000, 1, (0, 1), 3)  # a length of 0 is replayed as 1


def test_azure_and_burstgpt_traces_are_read_by_their_columns(tmp_path: Path) -> None:
    azure = tmp_path / "azure.csv"
    azure.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.0000000,396,109\n"
        "2023-11-16 18:15:47.1805900+00:00,100,0\n",
        encoding="utf-8",
    )
    found = traces.read(azure, "azure")
    assert [(r.input_tokens, r.output_tokens, r.line) for r in found] == [(374, 44, 2), (100, 1, 4), (396, 109, 3)]
    assert found[1].at_s - found[0].at_s == pytest.approx(0.5)
    assert found[2].at_s - found[0].at_s == pytest.approx(3.31941)
    burst = tmp_path / "burst.csv"
    burst.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "12.5,GPT-4,1087,0,1087,API log\n",
        encoding="utf-8",
    )
    assert [(r.at_s, r.input_tokens, r.output_tokens) for r in traces.read(burst, "burstgpt")] == [
        (5.0, 472, 18),
        (12.5, 1087, 1),
    ]


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("mooncake", '{"timestamp": 1, "input_length": 5, "output_length": 2, "hash_ids": []}\n{"timestamp": 2,\n',
         r"t:2: expected a JSON object, got text that is not JSON"),
        ("mooncake", "[1, 2]\n", r"t:1: expected a JSON object, got \[1, 2\]"),
        ("mooncake", '{"input_length": 5, "output_length": 2, "hash_ids": []}\n',
         r"t:1: expected timestamp \(ms\), a number >= 0, got None"),
        ("mooncake", '{"timestamp": -3, "input_length": 5, "output_length": 2}\n', r"t:1: expected timestamp"),
        ("mooncake", '{"timestamp": 3, "input_length": "5", "output_length": 2}\n',
         r"t:1: expected input_length, an integer >= 0, got '5'"),
        ("mooncake", '{"timestamp": 3, "input_length": 5, "output_length": 2, "hash_ids": [1, -2]}\n',
         r"t:1: expected hash_ids, a list of integers >= 0, got \[1, -2\]"),
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,2\nyesterday,10,2\n",
         r"t:3: expected TIMESTAMP, a date and time"),
        ("azure", "TIMESTAMP,Context,GeneratedTokens\n2023-11-16 18:15:46,10,2\n",
         r"t:1: expected a azure header with the columns TIMESTAMP, ContextTokens, GeneratedTokens, got TIMESTAMP, "
         r"Context, GeneratedTokens"),
        ("burstgpt", "Timestamp,Request tokens,Response tokens\n1,10,2\n2,ten,2\n",
         r"t:3: expected Request tokens, an integer >= 0, got 'ten'"),
        ("burstgpt", "Timestamp,Request tokens,Response tokens\nnan,10,2\n", r"t:2: expected Timestamp \(seconds\)"),
        ("burstgpt", "", r"t:1: expected a burstgpt header"),
        ("mooncake", "\n\n", r"t: no requests in the mooncake trace"),
    ],
)  # fmt: skip
def test_a_malformed_line_is_named_with_what_was_expected(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    path = tmp_path / "t"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        traces.read(path, fmt)  # type: ignore[arg-type]


def test_a_missing_or_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nothing\.jsonl: No such file"):
        traces.read(tmp_path / "nothing.jsonl", "mooncake")
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"b\.jsonl: not UTF-8 text"):
        traces.read(binary, "mooncake")


def test_the_schedule_starts_stops_and_scales_on_the_traces_clock(tmp_path: Path) -> None:
    path = mooncake(tmp_path / "t.jsonl", *(row(1000 * s, [s]) for s in range(6)))
    requests = traces.read(path, "mooncake")
    whole = traces.Replay(path, "mooncake", requests)
    assert whole.schedule() == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    part = traces.Replay(path, "mooncake", requests, time_scale=0.5, start_s=1.5, stop_s=4.0)
    assert [r.at_s for r in part.selected] == [2.0, 3.0]
    assert part.schedule() == (0.25, 0.75)  # from the start asked, twice as fast
    plan = part.plan(StepPlan(0, "concurrency", concurrency=1, duration_s=20, max_concurrency=3))
    assert (plan.mode, plan.arrival, plan.rate, plan.max_concurrency) == ("rate", "trace", 2.0, 3)
    assert plan.label == "trace=t.jsonl,x0.5"
    assert list(offsets(plan)) == [(0.25, False), (0.75, False)]
    assert part.describe()["requests"] == 2
    with pytest.raises(ValueError, match="no request of the trace lies between"):
        traces.Replay(path, "mooncake", requests, start_s=10)
    with pytest.raises(ValueError, match="--trace-stop must come after --trace-start"):
        traces.Replay(path, "mooncake", requests, start_s=3, stop_s=2)
    with pytest.raises(ValueError, match="--time-scale must be a positive number"):
        traces.Replay(path, "mooncake", requests, time_scale=0)


def test_the_same_block_id_gives_the_same_words_and_a_prompt_is_cut_to_its_length(tmp_path: Path) -> None:
    calibration = Calibration(overhead_tokens=0.0, tokens_per_word=1.0, measured=True)
    path = mooncake(tmp_path / "t.jsonl", row(0, [7, 8], 1024), row(1, [7, 9], 700), row(2, [7], 300), row(3, [], 20))
    prompts = traces.items(traces.read(path, "mooncake"), calibration, seed=1)
    words = [p.messages[0]["content"].split() for p in prompts if p.messages]
    assert [len(w) for w in words] == [1024, 700, 300, 20]
    assert words[0][:512] == words[1][:512] == words[2][:300] + words[0][300:512]  # block 7, shared
    assert words[0][512:] != words[1][512:700]  # blocks 8 and 9
    assert [p.max_tokens for p in prompts] == [8, 8, 8, 8]
    again = traces.items(traces.read(path, "mooncake"), calibration, seed=1)
    assert again == prompts
    other_seed = traces.items(traces.read(path, "mooncake"), calibration, seed=2)
    assert other_seed[0].messages != prompts[0].messages
