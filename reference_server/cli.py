"""`python -m reference_server`: parse the command line once into a frozen ServerConfig and serve."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reference_server.auth import KeyRing
from reference_server.config import (
    DEFAULT_CONCURRENCY_LIMIT,
    ApiKey,
    ServerConfig,
    SimOptions,
    generate_key,
    keys_from_environment,
    keys_from_secrets,
    load_keys_file,
)
from reference_server.server import serve

log = logging.getLogger("reference_server")


def _engine_arg(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.replace("-", "_"), value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reference_server", description=__doc__)
    p.add_argument("--engine", choices=["sim", "vllm"], default="sim")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (the ready line says which)")
    p.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="uvloop (default, faster) or asyncio's own loop, on which ground-truth traces take each request's "
        "arrival from the kernel (SO_TIMESTAMPNS) rather than from when the loop read it",
    )
    keys = p.add_argument_group("keys and limits")
    keys.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="an accepted key (repeatable); default: $ANYSCALE_API_KEY, else one is generated",
    )
    keys.add_argument("--keys-file", type=Path, help="TOML or JSON: keys = [{name, key|sha256, concurrency_limit}]")
    keys.add_argument(
        "--concurrency-limit",
        type=int,
        default=DEFAULT_CONCURRENCY_LIMIT,
        help="requests in flight per key (default %(default)s)",
    )
    p.add_argument("--profile", choices=["anyscale", "openai"], default="anyscale")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ID",
        help="sim: a model id to serve (repeatable); vllm: the model path or hub id",
    )
    p.add_argument("--enable-faults", action="store_true", help="honour the x-fault request header")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024)
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a request body")
    p.add_argument("--grace-period", type=float, default=30.0, help="seconds in-flight requests get at shutdown")
    p.add_argument("--log-level", default="INFO")
    sim = p.add_argument_group("simulator (--engine sim)")
    defaults = SimOptions()
    sim.add_argument("--ttft-ms", type=float, default=defaults.ttft_ms)
    sim.add_argument("--prefill-ms-per-token", type=float, default=defaults.prefill_ms_per_token)
    sim.add_argument("--itl-ms", type=float, default=defaults.itl_ms)
    sim.add_argument(
        "--itl-batch-factor",
        type=float,
        default=defaults.itl_batch_factor,
        help="ITL grows by this fraction per extra running sequence",
    )
    sim.add_argument("--max-num-seqs", type=int, default=None, help="sequences batched at once")
    sim.add_argument("--output-len-mean", type=int, default=defaults.output_len_mean)
    sim.add_argument("--seed", type=int, default=defaults.seed)
    sim.add_argument(
        "--reasoning-tokens",
        type=_count,
        default=defaults.reasoning_tokens,
        metavar="N",
        help="the first N tokens of every request are reasoning (reasoning_content), then the answer; they count "
        "toward max_tokens and usage (default %(default)s)",
    )
    sim.add_argument("--block-size", type=int, default=defaults.block_size, help="tokens per block of the prefix cache")
    sim.add_argument(
        "--prefix-cache-blocks",
        type=_count,
        default=defaults.prefix_cache_blocks,
        metavar="N",
        help="blocks the prefix cache holds, least recently used out first; cached prompt tokens skip their prefill "
        "cost and are reported as usage.prompt_tokens_details.cached_tokens under --profile openai (0: no cache; "
        "default %(default)s)",
    )
    vllm = p.add_argument_group("vLLM (--engine vllm)")
    vllm.add_argument("--served-model-name")
    vllm.add_argument("--max-model-len", type=int, help="context length (the simulator caps its models' at it too)")
    vllm.add_argument("--dtype", default="auto")
    vllm.add_argument("--tensor-parallel-size", type=int, default=1)
    vllm.add_argument("--pipeline-parallel-size", type=int, default=1)
    vllm.add_argument("--data-parallel-size", type=int, default=1)
    vllm.add_argument("--gpu-memory-utilization", type=float)
    vllm.add_argument("--enforce-eager", action="store_true")
    vllm.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        type=_engine_arg,
        metavar="KEY=VALUE",
        help="any other vLLM engine argument (value parsed as JSON when it is JSON); repeatable",
    )
    return p


def _keys(args: argparse.Namespace) -> list[ApiKey]:
    keys = keys_from_secrets(args.api_key, "cli")
    if args.keys_file is not None:
        keys += load_keys_file(args.keys_file)
    if not keys:
        keys = keys_from_environment(os.environ)
    if not keys:
        secret = generate_key()
        # Printed once so that the operator can use it; it is never logged again.
        print(f"No API key configured; generated one for this run: {secret}", file=sys.stderr, flush=True)
        keys = keys_from_secrets([secret], "generated")
    for key in keys:
        log.info(
            "accepting key %r%s",
            key.name,
            f" (limit {key.concurrency_limit})" if key.concurrency_limit else "",
        )
    return keys


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    sim = SimOptions(
        ttft_ms=args.ttft_ms,
        prefill_ms_per_token=args.prefill_ms_per_token,
        itl_ms=args.itl_ms,
        itl_batch_factor=args.itl_batch_factor,
        max_num_seqs=args.max_num_seqs or SimOptions().max_num_seqs,
        output_len_mean=args.output_len_mean,
        seed=args.seed,
        max_model_len=args.max_model_len,
        reasoning_tokens=args.reasoning_tokens,
        block_size=args.block_size,
        prefix_cache_blocks=args.prefix_cache_blocks,
    )
    engine_options: dict[str, Any] = {
        "model": args.model[0] if args.model else None,
        "served_model_name": args.served_model_name,
        "max_model_len": args.max_model_len,
        "dtype": args.dtype,
        "tensor_parallel_size": args.tensor_parallel_size,
        "pipeline_parallel_size": args.pipeline_parallel_size,
        "data_parallel_size": args.data_parallel_size,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "enforce_eager": args.enforce_eager,
        "max_num_seqs": args.max_num_seqs,
        "seed": args.seed,
        "engine_args": dict(args.engine_arg),
    }
    return ServerConfig(
        host=args.host,
        port=args.port,
        engine=args.engine,
        profile=args.profile,
        keys=tuple(_keys(args)),
        concurrency_limit=args.concurrency_limit,
        models=tuple(args.model),
        enable_faults=args.enable_faults,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout,
        grace_period_s=args.grace_period,
        sim=sim,
        engine_options=engine_options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    if config.engine == "vllm":
        # vLLM reads its logging setup from the environment at import, in this process and its engine process.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from reference_server.engines import create_engine

    try:
        engine = create_engine(config)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keyring = KeyRing(config.keys)
    if args.event_loop == "uvloop":
        _use_uvloop()
    # What the imports allocated stays out of later garbage collections: a full collection walks every object
    # (~45 ms here with aiohttp, jinja2 and prometheus-client loaded) and would stall the loop mid-stream.
    gc.collect()
    gc.freeze()
    asyncio.run(serve(config, engine, keyring))
    return 0


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
