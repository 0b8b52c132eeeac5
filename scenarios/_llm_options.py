"""The scenarios' command-line options, and the frozen configuration each test parses them into once.

Options are plain strings, numbers and flags: Locust shows them in its web UI and a master sends them to its
workers as they are (msgpack), so they are turned into richer types only in `LLMOptions.parse`. Give them to the
master: a worker takes the master's values, its own command line is overridden.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.load.conversation import SessionSpec
from harness.load.prompts import LengthDistribution
from schemas import CHAT_FAMILIES, PROFILES, ChatFamily, Profile


def add_options(parser: Any) -> None:
    """Registered on Locust's `init_command_line_parser` event (the parser is Locust's configargparse parser)."""
    parser.add_argument(
        "--api-key",
        env_var="ANYSCALE_API_KEY",
        default="",
        is_secret=True,
        help="API key of the endpoint (default $ANYSCALE_API_KEY)",
    )
    parser.add_argument("--model", default="", help="model id (default: the first model the endpoint lists)")
    parser.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (default 128)")
    parser.add_argument(
        "--input-tokens",
        default="256",
        help="synthetic prompt length in words: N, normal:MEAN,SD, uniform:LO,HI or lognormal:MEDIAN,SIGMA",
    )
    parser.add_argument(
        "--prompts",
        default="",
        help="JSONL file of prompts (strings, {prompt} or {messages}, optional max_tokens); default: synthetic",
    )
    parser.add_argument(
        "--records",
        default="",
        help="write every request in the project's record format: a directory (one "
        "records-<host>-<pid>.jsonl per process) or a .jsonl file",
    )
    parser.add_argument(
        "--template-family",
        default="",
        choices=["", *CHAT_FAMILIES],
        help="chat template that formats completion prompts (default: from the model name)",
    )
    parser.add_argument(
        "--no-ignore-eos",
        action="store_true",
        default=False,
        help="do not send ignore_eos/min_tokens (for servers that reject them)",
    )
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds for a whole request")
    parser.add_argument(
        "--trace-timing",
        action="store_true",
        default=False,
        help="ask the reference server for ground-truth timings (x-trace-timing: 1)",
    )
    parser.add_argument(
        "--validate-chunks", action="store_true", default=False, help="check every chunk against its schema"
    )
    parser.add_argument(
        "--api-profile",
        default="anyscale",
        choices=list(PROFILES),
        help="response shapes that --validate-chunks checks",
    )
    parser.add_argument("--num-prompts", type=int, default=1000, help="distinct synthetic prompts")
    parser.add_argument("--prompt-seed", type=int, default=0, help="seed of the synthetic prompts")
    parser.add_argument(
        "--turns",
        default="4",
        help="session.py: turns per session (N or a distribution; with --prompts, at most this many of each "
        "conversation, 'all': every one); --input-tokens is each turn's new user tokens",
    )
    parser.add_argument(
        "--think-time", default="0", help="session.py: seconds from an answer to the next turn (N or a distribution)"
    )
    parser.add_argument(
        "--session-header", default="", help="session.py: send each turn with this header, its value the session's id"
    )


@dataclass(frozen=True, slots=True)
class LLMOptions:
    api_key: str
    model: str | None
    max_tokens: int
    input_tokens: LengthDistribution
    prompts: Path | None
    records: Path | None
    family: ChatFamily | None
    exact_lengths: bool
    request_timeout_s: float
    trace_timing: bool
    validate_chunks: bool
    profile: Profile
    num_prompts: int
    seed: int
    sessions: SessionSpec

    @classmethod
    def parse(cls, options: argparse.Namespace | None) -> LLMOptions:
        """Raises ValueError with a message for the user when an option is unusable."""

        def get(name: str, default: Any) -> Any:
            return getattr(options, name, default) if options is not None else default

        max_tokens = int(get("max_tokens", 128))
        if max_tokens < 1:
            raise ValueError("--max-tokens must be at least 1")
        family = get("template_family", "") or None
        if family is not None and family not in CHAT_FAMILIES:
            raise ValueError(f"--template-family must be one of {', '.join(CHAT_FAMILIES)}")
        profile = get("api_profile", "anyscale")
        if profile not in PROFILES:
            raise ValueError(f"--api-profile must be one of {', '.join(PROFILES)}")
        prompts = get("prompts", "")
        records = get("records", "")
        turns = str(get("turns", "4"))
        sessions = SessionSpec(
            None if turns == "all" else LengthDistribution.parse(turns),
            LengthDistribution.parse(str(get("think_time", "0")), zero=True),
            str(get("session_header", "") or "") or None,
        )
        if turns == "all" and not prompts:
            raise ValueError("--turns all needs conversations (--prompts)")
        return cls(
            api_key=str(get("api_key", "") or ""),
            model=str(get("model", "") or "") or None,
            max_tokens=max_tokens,
            input_tokens=LengthDistribution.parse(str(get("input_tokens", "256"))),
            prompts=Path(prompts) if prompts else None,
            records=Path(records) if records else None,
            family=family,
            exact_lengths=not get("no_ignore_eos", False),
            request_timeout_s=float(get("request_timeout", 600.0)),
            trace_timing=bool(get("trace_timing", False)),
            validate_chunks=bool(get("validate_chunks", False)),
            profile=profile,
            num_prompts=max(1, int(get("num_prompts", 1000))),
            seed=int(get("prompt_seed", 0)),
            sessions=sessions,
        )


def api_base(host: str) -> str:
    """The API's base URL ending in /v1, from Locust's host given with or without it."""
    base = host.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the host must be an http(s) URL, not {host!r}")
    return base if base.endswith("/v1") else base + "/v1"
