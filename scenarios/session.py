"""Multi-turn sessions: each user holds conversations, one after another, thinking between turns (`session` and
`session TTFT` in Locust).

A session has `--turns` turns (a number or a distribution; with `--prompts`, the user turns of a JSONL conversation
file, at most that many); each turn's new user message is `--input-tokens` words (synthetic) and every turn carries
the whole conversation so far, the assistant's answers as they were streamed. Between an answer and the next turn
the user thinks `--think-time` seconds. A turn that fails, or is refused with 429, ends its session (after the wait
Retry-After asks). Each turn's record keeps its session, its index, the history it carried and the server's cached
prompt tokens, as `harness bench --turns` records them, so `harness report` shows the same per-turn and cache
sections. `--session-header NAME` sends every turn with `NAME: <run id>-<session>`.

    locust -f scenarios/session.py -H http://127.0.0.1:8000/v1 --api-key KEY -u 20 -r 20 -t 2m --headless \\
        --turns 5 --think-time uniform:1,3 --input-tokens 64 --records reports/locust-session
"""

from __future__ import annotations

from _llm_user import LLMUser
from locust import task


class SessionUser(LLMUser):
    @task
    def session(self) -> None:
        self.converse()
