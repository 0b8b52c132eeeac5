"""What the conformance suite expects of each profile, and the requests it sends."""

from __future__ import annotations

from harness.conformance.contract import Contract, Settings, parse_header
from harness.target.endpoint import Target

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"


def contract(profile: str = "anyscale", model: str = LLAMA3, template: str | None = None) -> Contract:
    target = Target.of("http://127.0.0.1:1/v1", ["k"], model, profile=profile)
    return Contract(Settings(target, chat_template=template))


def test_anyscale_ids_are_the_model_and_32_hex_digits() -> None:
    c = contract()
    assert c.id_problem("chat", f"{LLAMA3}-{'ab' * 16}") is None
    assert c.id_problem("chat", f"{LLAMA3}-{'AB' * 16}") is not None
    assert c.id_problem("chat", f"other/model-{'ab' * 16}") is not None
    assert c.id_problem("completion", "cmpl-abc") is not None


def test_openai_ids_have_the_kind_prefix() -> None:
    c = contract("openai")
    assert c.id_problem("chat", "chatcmpl-abc123") is None
    assert c.id_problem("completion", "cmpl-abc123") is None
    assert c.id_problem("completion", "chatcmpl-abc123") is not None
    assert c.id_problem("chat", 42) is not None


def test_the_completion_prompt_is_the_conversation_in_the_family_template() -> None:
    c = contract()
    prompt = c.body("completion")["prompt"]
    assert prompt.startswith("<|begin_of_text|>") and "Say 'Test'." in prompt
    assert c.body("chat", max_tokens=1)["messages"][-1] == {"role": "user", "content": "Say 'Test'."}
    mistral = contract(model="mistralai/Mistral-7B-Instruct-v0.1")
    assert [m["role"] for m in mistral.conversation()] == ["user"]  # its template has no system role
    assert contract(model="some/unknown", template="llama2").bos == "<s>"


def test_schema_errors_name_where_the_instance_breaks() -> None:
    errors = contract().errors("model", {"id": "m", "object": "model", "created": "yesterday", "owned_by": "x"})
    assert len(errors) == 1 and errors[0].startswith("created:")


def test_headers_are_name_colon_value() -> None:
    assert parse_header("x-fault:  wrong_usage ") == ("x-fault", "wrong_usage")


def test_held_streams_send_ignore_eos_under_openai_only_once_the_target_took_it() -> None:
    assert contract().hold_body()["ignore_eos"] is True  # the anyscale profile's API is vLLM's
    strict = contract("openai")
    assert strict.ignore_eos is None  # not found out yet (`Slots` does, before its first stream)
    assert "ignore_eos" not in strict.hold_body()
    strict.ignore_eos = False
    assert strict.hold_body() == {"model": LLAMA3, "prompt": "Count from one to one million.", "stream": True}
    strict.ignore_eos = True
    assert strict.hold_body()["ignore_eos"] is True
