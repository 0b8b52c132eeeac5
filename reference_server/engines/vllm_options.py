"""The vllm engine's options, and the vLLM engine arguments (`AsyncEngineArgs`) they become.

Nothing here imports vLLM (only `cpu_has_bf16` imports torch, when called), so the options parse and translate
without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from reference_server.engines.embedded_model import SERVED_MODEL_ID

# On the CPU backend `gpu_memory_utilization` is the fraction of RAM vLLM reserves; its default (0.92) fails to
# start on a 24 GiB machine where the server, the tests and the load generator share the memory.
CPU_MEMORY_UTILIZATION = 0.3


@dataclass(frozen=True, slots=True)
class VllmOptions:
    """What the server passes to vLLM. `None` leaves a setting to vLLM, except where stated.

    `model=None` serves the embedded SmolLM2-135M-Instruct (converted into `cache_dir`, by default the user
    cache). `gpu_memory_utilization=None` means 0.3 on CPU and vLLM's default on a GPU. `reasoning_parser` names
    the vLLM reasoning parser that splits thinking from answer (None: no split). `engine_args` holds any other
    `AsyncEngineArgs` field by name and wins over the fields above.
    """

    model: str | None = None
    served_model_name: str | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    enforce_eager: bool = False
    max_num_seqs: int | None = None
    seed: int | None = None
    reasoning_parser: str | None = None
    engine_args: dict[str, object] = field(default_factory=dict)
    cache_dir: Path | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> VllmOptions:
        """Options keyed by field name (`-` or `_`); unknown keys become `engine_args`.

        `reasoning_parser` is read by this wrapper as well as by vLLM, so it is taken out of `engine_args` too
        (the server's `--engine-arg reasoning_parser=NAME` puts it there).
        """
        known = {f.name for f in fields(cls)}
        chosen: dict[str, Any] = {}
        extra: dict[str, object] = {}
        for key, value in options.items():
            name = key.replace("-", "_")
            if name == "engine_args":
                extra.update({k.replace("-", "_"): v for k, v in value.items()})
            elif name in known:
                chosen[name] = value
            else:
                extra[name] = value
        if "reasoning_parser" in extra:
            parser = extra.pop("reasoning_parser")
            chosen.setdefault("reasoning_parser", str(parser) if parser else None)
        return cls(**chosen, engine_args=extra)

    @property
    def served_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        return SERVED_MODEL_ID if self.model is None else self.model


def engine_kwargs(options: VllmOptions, model: str, *, on_cpu: bool, cpu_bf16: bool = True) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments for `options`, with `model` resolved to a folder or hub id.

    `cpu_bf16` tells whether the CPU computes bfloat16 natively (AVX512-BF16/AMX). Without it vLLM's "auto"
    keeps a bfloat16 checkpoint in bfloat16 and runs about 4x slower than in float32, so "auto" means float32.
    """
    dtype = options.dtype
    if dtype == "auto" and on_cpu and not cpu_bf16:
        dtype = "float32"
    kwargs: dict[str, Any] = {
        "model": model,
        "served_model_name": options.served_name,
        "dtype": dtype,
        "tensor_parallel_size": options.tensor_parallel_size,
        "pipeline_parallel_size": options.pipeline_parallel_size,
        "data_parallel_size": options.data_parallel_size,
        "enforce_eager": options.enforce_eager,
        # vLLM's periodic stats lines and per-request logs are noise for a server that has its own;
        # the scheduler counts still flow to our stat logger.
        "disable_log_stats": True,
        "enable_log_requests": False,
        # Said rather than left to vLLM's default, which depends on the model and the platform: the server reports
        # the cached prompt tokens, and a run over shared prefixes or sessions means to measure the cache.
        "enable_prefix_caching": True,
    }
    optional: dict[str, object | None] = {
        "max_model_len": options.max_model_len,
        "max_num_seqs": options.max_num_seqs,
        "seed": options.seed,
        "reasoning_parser": options.reasoning_parser or None,
        "gpu_memory_utilization": (
            options.gpu_memory_utilization
            if options.gpu_memory_utilization is not None
            else (CPU_MEMORY_UTILIZATION if on_cpu else None)
        ),
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    kwargs.update(options.engine_args)
    return kwargs


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16/AMX); needs torch, which vLLM brings."""
    import torch

    # The same (private) probe vLLM's CPU platform uses to pick its bfloat16 kernels.
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False
