"""The endpoint under test: where requests go, with which keys, for which model — and what its preflight found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.client.request import ApiKey
from schemas import Profile


@dataclass(frozen=True, slots=True)
class Target:
    """`base_url` ends in `/v1`, as the OpenAI SDK and the spec's ANYSCALE_BASE_URL have it; requests are spread over
    `keys` (`key-1`, `key-2`, … in records and reports); `preflight` is what the preflight found, recorded in a run's
    configuration (None: it was skipped or has not run)."""

    base_url: str
    keys: tuple[ApiKey, ...]
    model: str
    description: str = ""
    profile: Profile = "anyscale"
    concurrency_limit: int = 30
    preflight: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, base_url: str, secrets: Sequence[str], model: str, description: str = "", **more: Any) -> Target:
        """A target whose keys are named `key-1`, `key-2`, … in the order given."""
        keys = tuple(ApiKey(f"key-{i}", secret) for i, secret in enumerate(secrets, start=1))
        return cls(base_url, keys, model, description or base_url, **more)

    @property
    def api_key(self) -> str:
        return self.keys[0].secret

    @property
    def api_key_2(self) -> str | None:
        """A second key, when there is one: what checks that the limit is per key use."""
        return self.keys[1].secret if len(self.keys) > 1 else None

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/").removesuffix("/v1")
