"""Completions with formatted prompts: conversations rendered with the model family's chat template.

The family comes from the model name (Llama 3, Llama 2, Mistral, ChatML) or `--template-family`; prompts from
`--prompts` that are plain strings are sent as they are.

    locust -f scenarios/completion.py -H http://127.0.0.1:8000/v1 --api-key KEY -u 10 -r 10 -t 2m --headless
"""

from __future__ import annotations

from _llm_user import LLMUser
from locust import task


class CompletionUser(LLMUser):
    @task
    def completion(self) -> None:
        self.stream("completion")
