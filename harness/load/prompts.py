"""What to send: synthetic prompts with token-length distributions, JSONL prompt files and ShareGPT conversations.

Synthetic prompts are random words. How many tokens a word costs depends on the target's tokenizer, which the
harness cannot see, so the target itself is asked: `calibration_prompts` are sent once, and the `usage` they come
back with fits `prompt_tokens = overhead + tokens_per_word × words` (the overhead being the chat template's). The
real lengths of every request are in its record's `usage` anyway; the fit only makes the targets land close.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from harness.client.request import ClientConfig, Endpoint, exact_length_body, request_body
from schemas import ChatFamily, render_chat

Message = Mapping[str, str]
_T = TypeVar("_T")

_WORDS = (
    "time year people way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water room "
    "mother area money story fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war history party result "
    "change morning reason research girl guy moment air teacher force education foot boy age policy process music "
    "market sense nation plan college interest death experience effect use class control care field development "
    "role effort rate heart drug show leader light voice wife police mind price report decision son view "
    "relationship town road arm difference value building action model season society tax director position "
    "player record paper space ground form event official matter center couple site project activity star table "
    "need court oil situation cost industry figure street image phone data picture practice piece land product "
    "doctor wall patient worker news test movie north love support technology step baby computer type attention "
    "film tree source organization hair window evidence population truth song energy"
).split()


@dataclass(frozen=True, slots=True)
class PromptItem:
    """One request's input. Exactly one of `messages` and `prompt` is set."""

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    input_tokens_target: int | None = None
    prefix_group: int | None = None  # the shared prefix it starts with (`SharedPrefix`)

    def for_endpoint(self, endpoint: Endpoint, family: ChatFamily | None) -> PromptItem:
        """The same input shaped for an endpoint: completion mode renders a conversation with the model's template."""
        if endpoint == "chat" and self.messages is None:
            return replace(self, messages=({"role": "user", "content": self.prompt or ""},), prompt=None)
        if endpoint == "completion" and self.messages is not None:
            return replace(self, messages=None, prompt=rendered(self.messages, family))
        return self


def rendered(messages: Sequence[Message], family: ChatFamily | None) -> str:
    """A conversation as one completion prompt, in the model family's chat template."""
    if family is None:
        raise ValueError("completion mode needs the model's chat-template family to format conversations")
    return render_chat(family, messages)


@dataclass(frozen=True, slots=True)
class LengthDistribution:
    """Token lengths: `fixed:N` (or just `N`), `normal:MEAN,SD`, `uniform:LO,HI`, `lognormal:MEDIAN,SIGMA`."""

    kind: Literal["fixed", "normal", "uniform", "lognormal"]
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str, *, zero: bool = False) -> LengthDistribution:
        """The distribution a user wrote; `zero` allows values of 0 (think times: `0`, `uniform:0,2`)."""
        kind, sep, rest = text.partition(":")
        if not sep:
            kind, rest = "fixed", text
        try:
            values = [float(v) for v in rest.split(",")]
        except ValueError:
            raise ValueError(f"bad length distribution {text!r}") from None
        if kind == "fixed" and len(values) == 1 and values[0] >= (0 if zero else 1):
            return cls("fixed", values[0])
        least_ok = values[0] >= 0 if zero and kind == "uniform" else values[0] > 0
        if kind in ("normal", "uniform", "lognormal") and len(values) == 2 and least_ok and values[1] >= 0:
            if kind == "uniform" and values[1] < values[0]:
                raise ValueError(f"uniform:{rest}: the upper bound is below the lower one")
            return cls(kind, values[0], values[1])  # type: ignore[arg-type]
        raise ValueError(
            f"bad length distribution {text!r}: use N, normal:MEAN,SD, uniform:LO,HI or lognormal:MEDIAN,SIGMA"
        )

    def __str__(self) -> str:
        """The form a user writes (`32`, `normal:256,64`), which `parse` reads back to this distribution."""
        if self.kind == "fixed":
            return _number(self.a)
        return f"{self.kind}:{_number(self.a)},{_number(self.b)}"

    def sample(self, rng: random.Random) -> int:
        """A whole number of at least 1 (a length)."""
        return max(1, round(self.draw(rng)))

    def draw(self, rng: random.Random) -> float:
        """A value as drawn, never below 0 (a time)."""
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "normal":
            value = rng.gauss(self.a, self.b)
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        else:
            value = self.a * rng.lognormvariate(0.0, self.b)
        return max(0.0, value)

    @property
    def mean(self) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a


def _number(value: float) -> str:
    # Whole numbers as users write them (32, not 32.0); others as repr, the shortest text that reads back exactly.
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True, slots=True)
class Calibration:
    """`prompt_tokens ≈ overhead_tokens + tokens_per_word × words` on the target."""

    overhead_tokens: float = 0.0
    tokens_per_word: float = 1.0
    measured: bool = False

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead_tokens) / self.tokens_per_word))


CALIBRATION_WORDS = (32, 512)


def calibration_prompts(seed: int = 0) -> list[PromptItem]:
    rng = random.Random(seed ^ 0x5EED)
    return [PromptItem(({"role": "user", "content": random_words(rng, n)},), None, 1, None) for n in CALIBRATION_WORDS]


def fit_calibration(prompt_tokens: Sequence[int | None]) -> Calibration:
    """The line through the two calibration points; the identity when the target gave no usage."""
    (w0, w1), (t0, t1) = CALIBRATION_WORDS, prompt_tokens
    if t0 is None or t1 is None or t1 <= t0:
        return Calibration()
    per_word = (t1 - t0) / (w1 - w0)
    return Calibration(max(0.0, t0 - per_word * w0), per_word, True)


def random_words(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(_WORDS, k=words))


@dataclass(frozen=True, slots=True)
class SharedPrefix:
    """Prompts that start with one of `groups` texts of `tokens` tokens: system prompts and documents reused across
    requests, as a server's prefix cache sees them. Prompt i is of group i mod `groups`; its text is the group's,
    the same in every request and for every seed of the run."""

    tokens: int
    groups: int = 1

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.groups < 1:
            raise ValueError("a shared prefix needs at least 1 token and 1 group")

    def texts(self, calibration: Calibration, seed: int) -> list[str]:
        words = max(1, round(self.tokens / calibration.tokens_per_word))
        return [random_words(random.Random(f"prefix:{seed}:{group}"), words) for group in range(self.groups)]

    def describe(self) -> dict[str, int]:
        return {"tokens": self.tokens, "groups": self.groups}


def synthetic(
    count: int,
    input_lengths: LengthDistribution,
    output_lengths: LengthDistribution,
    *,
    seed: int,
    calibration: Calibration,
    prefix: SharedPrefix | None = None,
) -> list[PromptItem]:
    """`count` distinct prompts; each asks for exactly its sampled output length (see `exact_length_body`).

    With a shared `prefix`, a prompt's sampled length is its whole length, the group's prefix included (at least one
    word of its own follows it).
    """
    rng = random.Random(seed)
    heads = prefix.texts(calibration, seed) if prefix is not None else []
    items = []
    for i in range(count):
        target = input_lengths.sample(rng)
        words = calibration.words_for(target)
        group = i % len(heads) if heads else None
        if group is None:
            text = random_words(rng, words)
        else:
            head = heads[group]
            text = f"{head} {random_words(rng, max(1, words - head.count(' ') - 1))}"
        message = ({"role": "user", "content": text},)
        items.append(PromptItem(message, None, output_lengths.sample(rng), target, group))
    return items


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A request body built once, with what it asked for."""

    body: bytes
    input_tokens_target: int | None
    max_tokens: int | None
    prefix_group: int | None = None


def prepare(
    config: ClientConfig,
    items: Sequence[PromptItem],
    family: ChatFamily | None,
    exact_lengths: bool,
    max_tokens: int | None = None,
) -> list[PreparedPrompt]:
    """The request bodies of `items` for `config`'s endpoint (ValueError when a conversation cannot be formatted).

    `max_tokens`, when given, replaces each item's own output length.
    """
    prepared = []
    for item in items:
        shaped = item.for_endpoint(config.endpoint, family)
        tokens = max_tokens if max_tokens is not None else shaped.max_tokens
        extra = exact_length_body(tokens) if exact_lengths else None
        body = request_body(config, shaped.messages, shaped.prompt, tokens, extra)
        prepared.append(PreparedPrompt(body, shaped.input_tokens_target, tokens, shaped.prefix_group))
    return prepared


def _messages(raw: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: messages must be a non-empty list")
    out = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: each message needs a string role and content")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def load_jsonl(path: Path, default_max_tokens: int | None = None) -> list[PromptItem]:
    """One prompt per line: a JSON string, `{"prompt": ...}` or `{"messages": [...]}`, optionally `max_tokens`."""
    items = []
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            obj = orjson.loads(line)
            if isinstance(obj, str):
                items.append(PromptItem(None, obj, default_max_tokens))
                continue
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a string or an object")
            max_tokens = obj.get("max_tokens", default_max_tokens)
            if "messages" in obj:
                items.append(PromptItem(_messages(obj["messages"], where), None, max_tokens))
            elif isinstance(obj.get("prompt"), str):
                items.append(PromptItem(None, obj["prompt"], max_tokens))
            else:
                raise ValueError(f"{where}: needs a 'prompt' string or a 'messages' list")
    if not items:
        raise ValueError(f"{path}: no prompts")
    return items


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def load_sharegpt(path: Path, calibration: Calibration, max_output_tokens: int = 1024) -> list[PromptItem]:
    """ShareGPT conversations: the first user turn (after any system turn) is the prompt, and the length of the
    reply that followed it in the data set, in estimated tokens, is the output length asked for."""
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, list):
        raise ValueError(f"{path}: a ShareGPT file is a JSON list of conversations")
    items = []
    for conversation in data:
        turns = conversation.get("conversations") if isinstance(conversation, dict) else None
        if not isinstance(turns, list):
            continue
        messages: list[Message] = []
        reply: str | None = None
        for turn in turns:
            role = SHAREGPT_ROLES.get(str(turn.get("from", ""))) if isinstance(turn, dict) else None
            value = turn.get("value") if isinstance(turn, dict) else None
            if role is None or not isinstance(value, str):
                break
            if role == "assistant":
                reply = value
                break
            messages.append({"role": role, "content": value})
        if not messages or messages[-1]["role"] != "user" or reply is None:
            continue
        reply_tokens = round(len(reply.split()) * calibration.tokens_per_word)
        items.append(PromptItem(tuple(messages), None, max(1, min(max_output_tokens, reply_tokens))))
    if not items:
        raise ValueError(f"{path}: no usable conversation (a user turn followed by an assistant reply)")
    return items


def shuffled(items: Iterable[_T], seed: int) -> list[_T]:
    pool = list(items)
    random.Random(seed).shuffle(pool)
    return pool
