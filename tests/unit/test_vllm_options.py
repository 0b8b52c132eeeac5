"""The vllm engine's options and the vLLM engine arguments they become, without vLLM."""

from __future__ import annotations

from reference_server.engines.embedded_model import SERVED_MODEL_ID
from reference_server.engines.vllm_options import CPU_MEMORY_UTILIZATION, VllmOptions, engine_kwargs


def test_embedded_model_is_served_under_its_hub_id() -> None:
    assert VllmOptions().served_name == SERVED_MODEL_ID
    assert VllmOptions(model="/models/llama").served_name == "/models/llama"
    assert VllmOptions(model="/models/llama", served_model_name="llama").served_name == "llama"


def test_cpu_reserves_a_fraction_of_ram_unless_told_otherwise() -> None:
    on_cpu = engine_kwargs(VllmOptions(), "/m", on_cpu=True)
    assert on_cpu["gpu_memory_utilization"] == CPU_MEMORY_UTILIZATION
    explicit = engine_kwargs(VllmOptions(gpu_memory_utilization=0.5), "/m", on_cpu=True)
    assert explicit["gpu_memory_utilization"] == 0.5
    assert "gpu_memory_utilization" not in engine_kwargs(VllmOptions(), "/m", on_cpu=False)


def test_auto_dtype_is_float32_on_a_cpu_without_bf16() -> None:
    assert engine_kwargs(VllmOptions(), "/m", on_cpu=True, cpu_bf16=False)["dtype"] == "float32"
    assert engine_kwargs(VllmOptions(), "/m", on_cpu=True, cpu_bf16=True)["dtype"] == "auto"
    assert engine_kwargs(VllmOptions(), "/m", on_cpu=False, cpu_bf16=False)["dtype"] == "auto"
    assert engine_kwargs(VllmOptions(dtype="bfloat16"), "/m", on_cpu=True, cpu_bf16=False)["dtype"] == "bfloat16"


def test_unset_options_are_left_to_vllm_and_engine_args_win() -> None:
    options = VllmOptions(
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        tensor_parallel_size=2,
        engine_args={"max_num_batched_tokens": 4096, "enforce_eager": True},
    )
    kwargs = engine_kwargs(options, "meta-llama/Meta-Llama-3-8B-Instruct", on_cpu=False)
    assert kwargs["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert kwargs["served_model_name"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert kwargs["tensor_parallel_size"] == 2
    assert kwargs["max_num_batched_tokens"] == 4096
    assert kwargs["enforce_eager"] is True
    assert not {"max_model_len", "max_num_seqs", "seed"} & kwargs.keys()


def test_options_from_mapping_route_unknown_keys_to_engine_args() -> None:
    options = VllmOptions.from_mapping(
        {"model": "m", "max-model-len": 1024, "enable_prefix_caching": False, "engine_args": {"swap_space": 1}}
    )
    assert options.model == "m"
    assert options.max_model_len == 1024
    assert options.engine_args == {"enable_prefix_caching": False, "swap_space": 1}
    assert options.reasoning_parser is None


def test_a_reasoning_parser_given_as_an_engine_arg_reaches_both_the_wrapper_and_vllm() -> None:
    # What the server's `--engine-arg reasoning_parser=qwen3` (or `reasoning-parser=...`) produces.
    for key in ("reasoning_parser", "reasoning-parser"):
        options = VllmOptions.from_mapping({"engine_args": {key: "qwen3", "swap_space": 1}})
        assert options.reasoning_parser == "qwen3"
        assert options.engine_args == {"swap_space": 1}
        assert engine_kwargs(options, "/m", on_cpu=True)["reasoning_parser"] == "qwen3"
    assert "reasoning_parser" not in engine_kwargs(VllmOptions(), "/m", on_cpu=True)


def test_prefix_caching_is_on_unless_an_engine_arg_turns_it_off() -> None:
    assert engine_kwargs(VllmOptions(), "/m", on_cpu=True)["enable_prefix_caching"] is True
    off = VllmOptions.from_mapping({"engine_args": {"enable_prefix_caching": False}})
    assert engine_kwargs(off, "/m", on_cpu=True)["enable_prefix_caching"] is False
