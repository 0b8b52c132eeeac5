"""A mixed workload: mostly short chat turns, some long generations, some formatted completions, with think time.

Each kind is its own row in Locust (`chat`, `chat long`, `completion`, each with its TTFT row) and its own endpoint
in the records. Long generations ask for four times `--max-tokens`.
"""

from __future__ import annotations

from _llm_user import LLMUser
from locust import between, task


class MixedUser(LLMUser):
    wait_time = between(0.0, 1.0)

    @task(6)
    def chat(self) -> None:
        self.stream("chat")

    @task(2)
    def chat_long(self) -> None:
        self.stream("chat", name="chat long", max_tokens=4 * self.max_tokens)

    @task(2)
    def completion(self) -> None:
        self.stream("completion")
