"""Multi-turn sessions: what each turn of a conversation sends, with the history the server really answered.

A session plays a `Script` — its user messages, the answer length each turn asks for, the think time before each
turn after the first — through a `Conversation`: each turn's request carries every earlier message, the assistant's
as the server streamed them (`Conversation.answered`). Scripts are synthetic (the number of turns and each turn's
new user tokens drawn from distributions, one seeded draw per session) or come from conversation files (ShareGPT,
or JSONL lines with `messages`): the user turns from the file, the assistant turns from the live replies, each
turn asking for as many tokens as the file's own reply had.

Shared by `harness bench` (`harness.load.sessions`) and the Locust session scenario: it does no I/O beyond reading
a conversation file and loads no HTTP library.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from harness.client.request import ClientConfig, exact_length_body, request_body
from harness.load.prompts import (
    SHAREGPT_ROLES,
    Calibration,
    LengthDistribution,
    Message,
    random_words,
    rendered,
)
from harness.records.record import Record
from schemas import ChatFamily

ConversationFormat = Literal["sharegpt", "jsonl"]
MAX_REPLY_TOKENS = 1024  # a file's reply asks for at most this many tokens


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """How sessions are drawn and played.

    `turns` is the number of turns of a synthetic session, or the most a file's conversation plays (None: all of
    it); `think_s` the seconds a user waits after an answer before the next turn; `header`, when set, is sent with
    every turn, its value the session's id, so that a router can keep a session on one replica.
    """

    turns: LengthDistribution | None = None
    think_s: LengthDistribution = field(default_factory=lambda: LengthDistribution("fixed", 0.0))
    header: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "turns": None if self.turns is None else str(self.turns),
            "think_s": str(self.think_s),
            "header": self.header,
        }


@dataclass(frozen=True, slots=True)
class Script:
    """One session's plan: per turn, the new user message, the output length asked and the think time before it."""

    users: tuple[str, ...]
    max_tokens: tuple[int | None, ...]
    think_s: tuple[float, ...]  # think_s[0] is 0: the first turn goes when the session starts
    system: str | None = None
    prefix_group: int | None = None

    def __post_init__(self) -> None:
        if not self.users or not len(self.users) == len(self.max_tokens) == len(self.think_s):
            raise ValueError("a script needs one user message, output length and think time per turn")

    @property
    def turns(self) -> int:
        return len(self.users)


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A conversation of a file: its system message, its user turns, and how long each reply of the file was."""

    system: str | None
    users: tuple[str, ...]
    reply_tokens: tuple[int | None, ...]


class Conversation:
    """A session in play: the messages so far, and each turn's request body."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.messages: list[Message] = [{"role": "system", "content": script.system}] if script.system else []

    def turn(self, index: int) -> list[Message]:
        """The messages turn `index` sends: the history, then its user message."""
        return [*self.messages, {"role": "user", "content": self.script.users[index]}]

    def answered(self, index: int, text: str) -> None:
        """Turn `index` was answered with `text`: both join the history of the turns after it."""
        self.messages += [{"role": "user", "content": self.script.users[index]}, {"role": "assistant", "content": text}]

    def body(self, index: int, config: ClientConfig, family: ChatFamily | None, exact_lengths: bool) -> bytes:
        """Turn `index`'s request body; a completion endpoint gets the conversation in the model's chat template."""
        messages = self.turn(index)
        tokens = self.script.max_tokens[index]
        extra = exact_length_body(tokens) if exact_lengths else None
        if config.endpoint == "chat":
            return request_body(config, messages, None, tokens, extra)
        return request_body(config, None, rendered(messages, family), tokens, extra)


@dataclass(frozen=True, slots=True)
class Scripts:
    """Where each session's script comes from: session n's is drawn from its own seeded generator, so a run's
    sessions are all different and the same for the same seed; with `dialogues`, session n plays dialogue n (in
    turn, modulo their number). With shared prefixes (`heads`, one text per group: `SharedPrefix.texts`), session n's
    first message starts with group n's (modulo their number)."""

    spec: SessionSpec
    user_tokens: LengthDistribution
    output_tokens: LengthDistribution
    calibration: Calibration
    seed: int = 0
    heads: tuple[str, ...] = ()
    dialogues: tuple[Dialogue, ...] = ()

    def script(self, n: int) -> Script:
        """Session n's script."""
        heads = self.heads
        rng = random.Random(f"session:{self.seed}:{n}")
        if self.dialogues:
            dialogue = self.dialogues[n % len(self.dialogues)]
            count = len(dialogue.users)
            if self.spec.turns is not None:
                count = min(count, self.spec.turns.sample(rng))
            users = list(dialogue.users[:count])
            tokens = [t if t is not None else self.output_tokens.sample(rng) for t in dialogue.reply_tokens[:count]]
            system = dialogue.system
        else:
            count = self.spec.turns.sample(rng) if self.spec.turns is not None else 1
            users = [random_words(rng, self.calibration.words_for(self.user_tokens.sample(rng))) for _ in range(count)]
            tokens = [self.output_tokens.sample(rng) for _ in range(count)]
            system = None
        group = n % len(heads) if heads else None
        if group is not None:
            users[0] = f"{heads[group]} {users[0]}"
        thinks = [0.0] + [self.spec.think_s.draw(rng) for _ in range(count - 1)]
        return Script(tuple(users), tuple(tokens), tuple(thinks), system, group)


def mark_turn(record: Record, session: int, script: Script, turn: int, previous: Record | None) -> None:
    """A turn's record: its session and place in it, what it asks for, and the history it carries in tokens (the
    turn before it, prompt and answer, as the server counted them; None when the server did not say)."""
    record.session, record.turn, record.session_turns = session, turn, script.turns
    record.prefix_group = script.prefix_group
    record.max_tokens = script.max_tokens[turn]
    if previous is None:
        record.history_tokens = 0
    elif previous.prompt_tokens is not None and previous.completion_tokens is not None:
        record.history_tokens = previous.prompt_tokens + previous.completion_tokens


def load_dialogues(path: Path, kind: ConversationFormat, calibration: Calibration) -> tuple[Dialogue, ...]:
    """The conversations of a ShareGPT file (a JSON list of `{"conversations": [{"from", "value"}, …]}`) or of a
    JSONL file (one `{"messages": [{"role", "content"}, …]}` per line, or a prompt: a one-turn conversation).
    ValueError, naming the file (and line), when it holds none."""
    if kind == "sharegpt":
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, list):
            raise ValueError(f"{path}: a ShareGPT file is a JSON list of conversations")
        turns = [_sharegpt_turns(c) for c in data]
        found = [d for t in turns if (d := _dialogue(t, calibration)) is not None]
    else:
        found = []
        for n, line in enumerate(path.read_bytes().splitlines(), start=1):
            if line.strip():
                found += _jsonl_dialogue(orjson.loads(line), f"{path}:{n}", calibration)
    if not found:
        raise ValueError(f"{path}: no conversation with a user turn")
    return tuple(found)


def _sharegpt_turns(conversation: Any) -> list[tuple[str, str]]:
    turns = conversation.get("conversations") if isinstance(conversation, dict) else None
    out = []
    for turn in turns if isinstance(turns, list) else ():
        role = SHAREGPT_ROLES.get(str(turn.get("from", ""))) if isinstance(turn, dict) else None
        value = turn.get("value") if isinstance(turn, dict) else None
        if role is None or not isinstance(value, str):
            break
        out.append((role, value))
    return out


def _jsonl_dialogue(obj: Any, where: str, calibration: Calibration) -> list[Dialogue]:
    if isinstance(obj, str):
        return [Dialogue(None, (obj,), (None,))]
    if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
        return [Dialogue(None, (obj["prompt"],), (None,))]
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise ValueError(f"{where}: expected a string, a 'prompt' or a 'messages' list of {{role, content}}")
    found = _dialogue([(m["role"], m["content"]) for m in messages], calibration)
    return [] if found is None else [found]


def _dialogue(turns: Sequence[tuple[str, str]], calibration: Calibration) -> Dialogue | None:
    """The user turns in order, each with the length of the reply that followed it in the file (None: none did)."""
    system = turns[0][1] if turns and turns[0][0] == "system" else None
    users: list[str] = []
    replies: list[int | None] = []
    for role, text in turns[1 if system is not None else 0 :]:
        if role == "user":
            users.append(text)
            replies.append(None)
        elif role == "assistant" and users and replies[-1] is None:
            replies[-1] = max(1, min(MAX_REPLY_TOKENS, round(len(text.split()) * calibration.tokens_per_word)))
    return Dialogue(system, tuple(users), tuple(replies)) if users else None
