"""Session scripts and conversations: seeded synthetic sessions, conversations from files, each turn's request with
the history really answered, and a turn's record."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from harness.client.request import ClientConfig
from harness.load.conversation import Conversation, Script, Scripts, SessionSpec, load_dialogues, mark_turn
from harness.load.prompts import Calibration, LengthDistribution, SharedPrefix
from harness.records.record import Record

WORD = Calibration(overhead_tokens=0.0, tokens_per_word=1.0, measured=True)
CONFIG = ClientConfig(base_url="http://127.0.0.1:1/v1", model="m")


def scripts(think_s: LengthDistribution) -> Scripts:
    spec = SessionSpec(LengthDistribution.parse("uniform:2,5"), think_s)
    return Scripts(spec, LengthDistribution("fixed", 12), LengthDistribution("fixed", 7), WORD, seed=3)


def test_synthetic_sessions_are_drawn_per_session_and_the_same_for_a_seed() -> None:
    made = scripts(think_s=LengthDistribution.parse("uniform:0,2", zero=True))
    drawn = [made.script(n) for n in range(40)]
    assert drawn == [made.script(n) for n in range(40)]
    assert {s.turns for s in drawn} == {2, 3, 4, 5}
    assert len({s.users[0] for s in drawn}) == 40  # every session its own
    for s in drawn:
        assert s.think_s[0] == 0.0 and all(0.0 <= t <= 2.0 for t in s.think_s)
        assert all(len(u.split()) == 12 for u in s.users) and set(s.max_tokens) == {7}
        assert s.system is None and s.prefix_group is None


def test_shared_prefixes_open_each_sessions_first_turn_by_group() -> None:
    heads = tuple(SharedPrefix(5, groups=2).texts(WORD, seed=3))
    made = Scripts(SessionSpec(LengthDistribution("fixed", 2)), LengthDistribution("fixed", 4),
                   LengthDistribution("fixed", 3), WORD, 3, heads)  # fmt: skip
    first, second, third = (made.script(n) for n in range(3))
    assert (first.prefix_group, second.prefix_group, third.prefix_group) == (0, 1, 0)
    assert first.users[0].startswith(heads[0] + " ") and third.users[0].startswith(heads[0] + " ")
    assert second.users[0].startswith(heads[1] + " ") and len(second.users[0].split()) == 9
    assert not first.users[1].startswith(heads[0])


def test_each_turn_carries_the_history_with_the_answers_received() -> None:
    script = Script(("one?", "two?", "three?"), (5, None, 9), (0.0, 1.0, 0.5), system="Be brief.")
    talk = Conversation(script)
    assert talk.turn(0) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one?"}]
    talk.answered(0, " One.")
    body = orjson.loads(talk.body(1, CONFIG, None, exact_lengths=True))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one?"},
        {"role": "assistant", "content": " One."},
        {"role": "user", "content": "two?"},
    ]
    assert "max_tokens" not in body and "ignore_eos" not in body  # the file's reply length was unknown
    talk.answered(1, "Two.")
    completion = orjson.loads(talk.body(2, ClientConfig(base_url="http://h/v1", model="m", endpoint="completion"),
                                        "chatml", exact_lengths=True))  # fmt: skip
    assert completion["prompt"].count("<|im_start|>assistant\n") == 3  # two answers, then the generation prompt
    assert completion["prompt"].endswith("three?<|im_end|>\n<|im_start|>assistant\n")
    assert (completion["max_tokens"], completion["min_tokens"], completion["ignore_eos"]) == (9, 9, True)
    with pytest.raises(ValueError, match="chat-template family"):
        talk.body(2, ClientConfig(base_url="http://h/v1", model="m", endpoint="completion"), None, True)


def test_a_script_needs_one_of_each_per_turn() -> None:
    with pytest.raises(ValueError, match="one user message, output length and think time per turn"):
        Script(("a", "b"), (1,), (0.0, 0.0))
    with pytest.raises(ValueError, match="one user message"):
        Script((), (), ())


def test_a_turns_record_says_its_session_place_and_history() -> None:
    script = Script(("a", "b"), (5, 6), (0.0, 0.0), prefix_group=2)
    first, second = Record(), Record()
    mark_turn(first, 4, script, 0, None)
    assert (first.session, first.turn, first.session_turns, first.history_tokens) == (4, 0, 2, 0)
    assert (first.max_tokens, first.prefix_group) == (5, 2)
    first.prompt_tokens, first.completion_tokens = 30, 5
    mark_turn(second, 4, script, 1, first)
    assert (second.turn, second.history_tokens, second.max_tokens) == (1, 35, 6)
    unknown = Record()
    mark_turn(unknown, 4, script, 1, Record())  # the server said nothing of the turn before
    assert unknown.history_tokens is None


def test_conversations_come_from_sharegpt_and_jsonl_files(tmp_path: Path) -> None:
    sharegpt = tmp_path / "s.json"
    sharegpt.write_text(json.dumps([
        {"conversations": [{"from": "system", "value": "Sys."}, {"from": "human", "value": "q1"},
                           {"from": "gpt", "value": "a b c"}, {"from": "human", "value": "q2"}]},
        {"conversations": [{"from": "gpt", "value": "no question"}]},
        "not a conversation",
    ]), encoding="utf-8")  # fmt: skip
    (found,) = load_dialogues(sharegpt, "sharegpt", Calibration(tokens_per_word=2.0))
    assert (found.system, found.users, found.reply_tokens) == ("Sys.", ("q1", "q2"), (6, None))
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('"just a prompt"\n\n{"messages": [{"role": "user", "content": "x"}, '
                     '{"role": "assistant", "content": "y z"}, {"role": "user", "content": "w"}]}\n',
                     encoding="utf-8")  # fmt: skip
    single, double = load_dialogues(jsonl, "jsonl", WORD)
    assert single.users == ("just a prompt",) and double.users == ("x", "w") and double.reply_tokens == (2, None)
    made = Scripts(SessionSpec(LengthDistribution("fixed", 1)), LengthDistribution("fixed", 4),
                   LengthDistribution("fixed", 3), WORD, dialogues=(single, double))  # fmt: skip
    assert [made.script(n).users for n in range(3)] == [("just a prompt",), ("x",), ("just a prompt",)]
    assert made.script(1).max_tokens == (2,)  # the file's reply length; --turns 1 plays one turn of it
    every = Scripts(SessionSpec(None), LengthDistribution("fixed", 4), LengthDistribution("fixed", 3), WORD,
                    dialogues=(double,))  # fmt: skip
    assert every.script(0).max_tokens == (2, 3)  # no reply in the file: the output length drawn


def test_a_bad_conversation_file_names_the_file_and_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"messages": [{"role": "user", "content": "x"}]}\n{"messages": [{"role": 1}]}\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2: expected a string, a 'prompt' or a 'messages' list"):
        load_dialogues(jsonl, "jsonl", WORD)
    empty = tmp_path / "e.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match=r"e\.json: no conversation with a user turn"):
        load_dialogues(empty, "sharegpt", WORD)
    empty.write_text("{}")
    with pytest.raises(ValueError, match="a ShareGPT file is a JSON list"):
        load_dialogues(empty, "sharegpt", WORD)
