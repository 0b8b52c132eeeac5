"""The vllm engine's configuration and its failure without vLLM; generation is in tests/integration."""

from __future__ import annotations

import sys

import pytest

from reference_server.engines.base import SamplingOptions
from reference_server.engines.embedded_model import SERVED_MODEL_ID
from reference_server.engines.vllm_engine import (
    CPU_MEMORY_UTILIZATION,
    VllmEngine,
    VllmOptions,
    VllmUnavailableError,
    engine_kwargs,
    sampling_params,
)


def test_missing_vllm_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(VllmUnavailableError, match=r"pip install '\.\[cpu\]'.*pip install '\.\[gpu\]'"):
        VllmEngine()


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


@pytest.mark.vllm
def test_sampling_options_map_onto_streaming_sampling_params() -> None:
    from vllm.sampling_params import RequestOutputKind

    params = sampling_params(
        SamplingOptions(
            max_tokens=12,
            temperature=0.5,
            top_p=0.9,
            stop=("END", "\n\n"),
            seed=7,
            presence_penalty=0.25,
            frequency_penalty=-0.5,
            ignore_eos=True,
            min_tokens=3,
        )
    )
    assert params.output_kind == RequestOutputKind.DELTA
    assert (params.max_tokens, params.min_tokens, params.seed, params.n) == (12, 3, 7, 1)
    assert (params.temperature, params.top_p) == (0.5, 0.9)
    assert (params.presence_penalty, params.frequency_penalty) == (0.25, -0.5)
    assert params.stop == ["END", "\n\n"]
    assert params.ignore_eos is True


@pytest.mark.vllm
def test_no_stop_strings_means_none() -> None:
    assert not sampling_params(SamplingOptions(max_tokens=1)).stop
