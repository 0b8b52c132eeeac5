"""The environment variables the harness reads, read in one place, at the edge (commands and the pytest plugin).

`ANYSCALE_BASE_URL` and `ANYSCALE_API_KEY` are the fallbacks the spec's examples use for the target; `CI` (set by every
CI service) turns the live progress line off. Nothing below the commands reads `os.environ`: configuration reaches the
library as frozen objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Environment:
    base_url: str | None = None
    api_key: str | None = None
    ci: bool = False

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        return cls(
            base_url=env.get("ANYSCALE_BASE_URL") or None,
            api_key=env.get("ANYSCALE_API_KEY") or None,
            ci=env.get("CI", "").lower() in ("1", "true", "yes"),
        )
