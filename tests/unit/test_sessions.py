"""Sessions played by the runner against a scripted in-process server: each turn carries the answers the server really
streamed, the affinity header and the think time; a turn refused with 429 stops its session and no other."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from harness.client.request import ApiKey, ClientConfig
from harness.client.session import Client
from harness.load.conversation import Scripts, SessionSpec
from harness.load.plan import StepPlan
from harness.load.progress import Progress
from harness.load.prompts import Calibration, LengthDistribution
from harness.load.runner import Runner
from harness.load.sessions import Sessions
from harness.records.record import Record, RecordWriter, RunInfo

from .test_client import MODEL, chunk, serve, stream

THINK_S = 0.05


class Scripted:
    """Answers turn k of a conversation with `answer-k <the user's last words>`; refuses what `refuse` picks."""

    def __init__(self, refuse: tuple[int, int] | None = None) -> None:
        self.seen: list[tuple[list[dict[str, str]], str | None]] = []
        self.refuse = refuse  # (session, turn) answered 429

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = orjson.loads(await request.read())
        messages = body["messages"]
        session = request.headers.get("x-session-id")
        self.seen.append((messages, session))
        turn = sum(1 for m in messages if m["role"] == "user") - 1
        if self.refuse is not None and session == f"run-{self.refuse[0]}" and turn == self.refuse[1]:
            error = {"error": {"message": "busy", "type": "rate_limit_error", "param": None, "code": None}}
            return web.json_response(error, status=429, headers={"Retry-After": "1"})
        words = messages[-1]["content"].split()[-1]
        usage = {"prompt_tokens": 10 * (turn + 1), "completion_tokens": 2, "total_tokens": 10 * (turn + 1) + 2}
        last: dict[str, Any] = orjson.loads(chunk(f" {words}", "stop", usage).removeprefix(b"data: "))
        last["usage"]["prompt_tokens_details"] = {"cached_tokens": 8 * turn}
        parts = [chunk(None, role=True), chunk(f"answer-{turn}"), b"data: " + orjson.dumps(last) + b"\n\n"]
        parts.append(b"data: [DONE]\n\n")
        return await stream(request, parts)


async def play(tmp_path: Path, server: Scripted, plan: StepPlan, turns: int = 3) -> list[Record]:
    async for base_url in serve(server.__call__):
        config = ClientConfig(base_url=base_url, model=MODEL)
        spec = SessionSpec(LengthDistribution("fixed", turns), LengthDistribution("fixed", THINK_S), "x-session-id")
        scripts = Scripts(spec, LengthDistribution("fixed", 3), LengthDistribution("fixed", 2), Calibration(), seed=1)
        info = RunInfo.start("run", target={}, config={})
        async with Client(config, [ApiKey("key-1", "k")], connections=8, origin_ns=info.origin_ns) as client:
            with RecordWriter(tmp_path / "records.jsonl", info) as writer:
                workload = Sessions(scripts, config, None, False, "run")
                runner = Runner(client, info, (), writer, Progress(False), workload=workload)
                await runner.execute([plan])
        return sorted(runner.records, key=lambda r: (r.session or 0, r.turn or 0))
    raise AssertionError("unreachable")


async def test_users_run_sessions_whose_turns_carry_the_answers_received(tmp_path: Path) -> None:
    server = Scripted()
    plan = StepPlan(0, "concurrency", concurrency=2, requests=3, per="session")
    records = await play(tmp_path, server, plan)
    assert [(r.session, r.turn) for r in records] == [(s, t) for s in range(3) for t in range(3)]
    assert all(r.error_kind is None and r.session_turns == 3 and r.user in (0, 1) for r in records)
    assert [r.history_tokens for r in records[:3]] == [0, 12, 22]
    assert [r.cached_tokens for r in records[:3]] == [0, 8, 16]
    for messages, session in server.seen:
        users = [m for m in messages if m["role"] == "user"]
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        # Each earlier answer as the server streamed it: its turn and the last word of the question it answered.
        assert answers == [f"answer-{k} {users[k]['content'].split()[-1]}" for k in range(len(answers))]
        assert len(answers) == len(users) - 1 and session is not None and session.startswith("run-")
    by_session: dict[int | None, list[Record]] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r)
    for turns in by_session.values():
        for before, after in itertools.pairwise(turns):
            # Taken up once the think time was over (a timer may round to the clock's resolution: 1 ms of slack).
            assert before.end_ns is not None and after.scheduled_ns - before.end_ns >= THINK_S * 1e9 - 1e6
            assert after.user == before.user  # a user plays its session to the end


async def test_a_turn_refused_with_429_ends_its_session_and_no_other(tmp_path: Path) -> None:
    server = Scripted(refuse=(1, 1))
    records = await play(tmp_path, server, StepPlan(0, "concurrency", concurrency=1, requests=3, per="session"))
    assert [(r.session, r.turn, r.error_kind) for r in records] == [
        (0, 0, None), (0, 1, None), (0, 2, None),
        (1, 0, None), (1, 1, "rate_limited"),
        (2, 0, None), (2, 1, None), (2, 2, None),
    ]  # fmt: skip


async def test_an_open_loop_starts_sessions_at_its_rate(tmp_path: Path) -> None:
    plan = StepPlan(0, "rate", rate=20.0, arrival="constant", requests=4, per="session", send_ahead_s=0.002)
    assert plan.label == "session_rate=20/s,constant"
    records = await play(tmp_path, Scripted(), plan, turns=2)
    firsts = [r for r in records if r.turn == 0]
    assert len(records) == 8 and len(firsts) == 4 and all(r.user is None for r in records)
    gaps = [b.scheduled_ns - a.scheduled_ns for a, b in itertools.pairwise(firsts)]
    assert all(abs(gap - 50_000_000) < 1_000 for gap in gaps)  # the pacer's schedule, to the nanosecond's rounding
    assert all(r.sent_ns is not None and r.sent_ns >= r.scheduled_ns for r in firsts)
