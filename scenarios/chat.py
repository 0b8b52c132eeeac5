"""Steady chat traffic: every user streams chat completions back to back (`chat` and `chat TTFT` in Locust).

`ChatUser` is also what `locust -f scenarios` runs when no user class is named.

    locust -f scenarios/chat.py -H http://127.0.0.1:8000/v1 --api-key KEY -u 20 -r 20 -t 2m --headless \
        --records reports/locust-chat
"""

from __future__ import annotations

from _llm_user import LLMUser
from locust import task


class ChatUser(LLMUser):
    @task
    def chat(self) -> None:
        self.stream("chat")
