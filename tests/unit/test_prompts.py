from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.load.prompts import (
    CALIBRATION_WORDS,
    Calibration,
    LengthDistribution,
    PromptItem,
    SharedPrefix,
    calibration_prompts,
    fit_calibration,
    load_jsonl,
    load_sharegpt,
    synthetic,
)
from schemas import render_chat


def test_length_distributions_parse_and_stay_positive() -> None:
    rng = random.Random(1)
    assert LengthDistribution.parse("128") == LengthDistribution("fixed", 128)
    assert LengthDistribution.parse("128").sample(rng) == 128
    uniform = LengthDistribution.parse("uniform:10,20")
    assert all(10 <= uniform.sample(rng) <= 20 for _ in range(200))
    normal = LengthDistribution.parse("normal:5,50")
    assert min(normal.sample(rng) for _ in range(500)) == 1
    assert LengthDistribution.parse("lognormal:100,0").sample(rng) == 100
    for bad in ("0", "normal:5", "uniform:9,3", "poisson:3,1", "x"):
        with pytest.raises(ValueError, match=r"length distribution|upper bound"):
            LengthDistribution.parse(bad)


_POSITIVE = st.floats(min_value=0.0, exclude_min=True, allow_nan=False)
_NON_NEGATIVE = st.floats(min_value=0.0, allow_nan=False)


@st.composite
def distributions(draw: st.DrawFn) -> LengthDistribution:
    """Any distribution `parse` accepts: fixed ≥ 1; normal and lognormal a > 0, b ≥ 0; uniform 0 < a ≤ b."""
    kind = draw(st.sampled_from(["fixed", "normal", "uniform", "lognormal"]))
    if kind == "fixed":
        return LengthDistribution("fixed", draw(st.floats(min_value=1.0, allow_nan=False)))
    a = draw(_POSITIVE)
    b = draw(st.floats(min_value=a, allow_nan=False)) if kind == "uniform" else draw(_NON_NEGATIVE)
    return LengthDistribution(kind, a, b)


@given(distributions())
def test_a_length_distribution_reads_back_from_its_text(distribution: LengthDistribution) -> None:
    assert LengthDistribution.parse(str(distribution)) == distribution


def test_a_length_distribution_prints_as_the_user_writes_it() -> None:
    for text in ("32", "normal:256,64", "uniform:10,20", "lognormal:100,0.5", "fixed:2.5"):
        assert str(LengthDistribution.parse(text)) == text.removeprefix("fixed:")
    # Equivalent spellings print in one canonical form.
    assert str(LengthDistribution.parse("fixed:32")) == "32"
    assert str(LengthDistribution.parse("normal:256.0, 64")) == "normal:256,64"
    assert str(LengthDistribution("uniform", 1e-7, 1234567.0)) == "uniform:1e-07,1234567"


def test_calibration_fits_the_line_through_the_two_probes() -> None:
    w0, w1 = CALIBRATION_WORDS
    # A tokenizer costing 1.5 tokens a word behind a 12-token template:
    calibration = fit_calibration([int(12 + 1.5 * w0), int(12 + 1.5 * w1)])
    assert (calibration.overhead_tokens, calibration.tokens_per_word, calibration.measured) == (12.0, 1.5, True)
    assert calibration.words_for(162) == 100
    assert fit_calibration([None, 10]) == Calibration()
    assert [len(p.messages[0]["content"].split()) for p in calibration_prompts() if p.messages] == list(
        CALIBRATION_WORDS
    )


def test_synthetic_prompts_are_seeded_distinct_and_sized_by_the_calibration() -> None:
    calibration = Calibration(overhead_tokens=10, tokens_per_word=2.0, measured=True)
    items = synthetic(
        20, LengthDistribution("fixed", 210), LengthDistribution("uniform", 5, 9), seed=3, calibration=calibration
    )
    assert items == synthetic(
        20, LengthDistribution("fixed", 210), LengthDistribution("uniform", 5, 9), seed=3, calibration=calibration
    )
    assert len({item.messages[0]["content"] for item in items if item.messages}) == 20
    assert all(item.messages and len(item.messages[0]["content"].split()) == 100 for item in items)
    assert all(item.input_tokens_target == 210 and item.max_tokens and 5 <= item.max_tokens <= 9 for item in items)


def test_completion_mode_formats_conversations_with_the_family_template() -> None:
    item = PromptItem(({"role": "user", "content": "Hi"},), None, 5)
    shaped = item.for_endpoint("completion", "llama2")
    assert shaped.prompt == render_chat("llama2", [{"role": "user", "content": "Hi"}])
    assert shaped.messages is None and shaped.max_tokens == 5
    with pytest.raises(ValueError, match="family"):
        item.for_endpoint("completion", None)
    assert PromptItem(None, "Hi").for_endpoint("chat", None).messages == ({"role": "user", "content": "Hi"},)


def test_jsonl_prompts_accept_strings_prompts_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = ['"plain"', '{"prompt": "p", "max_tokens": 3}', '{"messages": [{"role": "user", "content": "m"}]}', ""]
    path.write_text("\n".join(lines))
    items = load_jsonl(path, default_max_tokens=9)
    assert items == [
        PromptItem(None, "plain", 9),
        PromptItem(None, "p", 3),
        PromptItem(({"role": "user", "content": "m"},), None, 9),
    ]
    path.write_text('{"nothing": 1}\n')
    with pytest.raises(ValueError, match=":1:"):
        load_jsonl(path)


def test_sharegpt_takes_the_first_user_turn_and_the_reply_length(tmp_path: Path) -> None:
    data = [
        {
            "id": "a",
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hello?"},
                {"from": "gpt", "value": "one two three four"},
            ],
        },
        {"id": "b", "conversations": [{"from": "gpt", "value": "starts with the model"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "no reply"}]},
    ]
    path = tmp_path / "sharegpt.json"
    path.write_bytes(orjson.dumps(data))
    items = load_sharegpt(path, Calibration(tokens_per_word=1.5))
    assert items == [
        PromptItem(({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}), None, 6)
    ]


def test_a_length_built_from_an_int_prints_as_one() -> None:
    assert str(LengthDistribution("fixed", 256)) == "256"  # as bench's default is written


def test_times_may_be_zero_and_are_drawn_unrounded() -> None:
    rng = random.Random(2)
    assert LengthDistribution.parse("0", zero=True).draw(rng) == 0.0
    uniform = LengthDistribution.parse("uniform:0,0.5", zero=True)
    draws = [uniform.draw(rng) for _ in range(200)]
    assert all(0.0 <= d <= 0.5 for d in draws) and len({round(d, 6) for d in draws}) > 100
    assert min(LengthDistribution.parse("normal:0.1,1", zero=True).draw(rng) for _ in range(200)) == 0.0
    for bad in ("0", "uniform:0,2", "-1"):
        with pytest.raises(ValueError, match="length distribution"):
            LengthDistribution.parse(bad)
    with pytest.raises(ValueError, match="length distribution"):
        LengthDistribution.parse("-1", zero=True)


def test_synthetic_prompts_share_their_groups_prefix_and_keep_their_length() -> None:
    calibration = Calibration(overhead_tokens=0.0, tokens_per_word=1.0, measured=True)
    prefix = SharedPrefix(tokens=90, groups=3)
    items = synthetic(9, LengthDistribution("fixed", 100), LengthDistribution("fixed", 4), seed=5,
                      calibration=calibration, prefix=prefix)  # fmt: skip
    texts = [i.messages[0]["content"].split() for i in items if i.messages]
    assert [i.prefix_group for i in items] == [0, 1, 2] * 3
    assert all(len(t) == 100 for t in texts)
    heads = prefix.texts(calibration, seed=5)
    for item, words in zip(items, texts, strict=True):
        assert item.prefix_group is not None and words[:90] == heads[item.prefix_group].split()
    assert len({tuple(t[90:]) for t in texts}) == 9  # every prompt's own end
    assert len(set(heads)) == 3 and heads == prefix.texts(calibration, seed=5)
    short = synthetic(2, LengthDistribution("fixed", 20), LengthDistribution("fixed", 4), seed=5,
                      calibration=calibration, prefix=prefix)  # fmt: skip
    assert [len(i.messages[0]["content"].split()) for i in short if i.messages] == [91, 91]  # one word of its own
    plain = synthetic(3, LengthDistribution("fixed", 100), LengthDistribution("fixed", 4), seed=5,
                      calibration=calibration)  # fmt: skip
    assert all(i.prefix_group is None for i in plain)
    with pytest.raises(ValueError, match="at least 1 token"):
        SharedPrefix(tokens=0)
