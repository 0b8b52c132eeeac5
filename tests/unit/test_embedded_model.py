"""The embedded model's cache: a folder is reused only when its manifest vouches for every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reference_server.engines import embedded_model
from reference_server.engines.embedded_model import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_DIR_NAME,
    default_cache_dir,
    ensure_embedded_model,
    is_complete,
    source_identity,
    write_manifest,
)


class FakeConverter:
    """Stands in for the 30 s GGUF conversion: writes a model-shaped folder and counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, gguf: Path, out: Path) -> None:
        self.calls += 1
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(b"\0" * 1024)
        if self.fail:
            raise RuntimeError("conversion interrupted")
        (out / "tokenizer.json").write_text("{}")


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + b"\1" * 100)
    return path


@pytest.fixture
def converter(monkeypatch: pytest.MonkeyPatch) -> FakeConverter:
    fake = FakeConverter()
    monkeypatch.setattr(embedded_model, "convert_gguf", fake)
    return fake


def built_folder(tmp_path: Path, gguf: Path) -> Path:
    folder = tmp_path / "built"
    folder.mkdir()
    FakeConverter()(gguf, folder)
    write_manifest(folder, source_identity(gguf))
    return folder


def test_cache_dir_follows_xdg_cache_home() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/var/cache/me"}) == Path("/var/cache/me/anyscale-loadtest/models")


def test_cache_dir_falls_back_to_home_cache() -> None:
    assert default_cache_dir({}) == Path.home() / ".cache" / "anyscale-loadtest" / "models"
    assert default_cache_dir({"XDG_CACHE_HOME": ""}) == Path.home() / ".cache" / "anyscale-loadtest" / "models"


def test_sealed_folder_is_complete(tmp_path: Path, gguf: Path) -> None:
    folder = built_folder(tmp_path, gguf)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["format"] == FORMAT_VERSION
    assert manifest["files"] == {"config.json": 23, "model.safetensors": 1024, "tokenizer.json": 2}
    assert is_complete(folder, source_identity(gguf))


def test_folder_without_manifest_is_incomplete(tmp_path: Path, gguf: Path) -> None:
    folder = built_folder(tmp_path, gguf)
    (folder / MANIFEST_NAME).unlink()
    assert not is_complete(folder)


def test_missing_or_truncated_file_makes_folder_incomplete(tmp_path: Path, gguf: Path) -> None:
    folder = built_folder(tmp_path, gguf)
    (folder / "model.safetensors").write_bytes(b"\0" * 10)
    assert not is_complete(folder)
    (folder / "model.safetensors").unlink()
    assert not is_complete(folder)


def test_corrupt_or_foreign_manifest_makes_folder_incomplete(tmp_path: Path, gguf: Path) -> None:
    folder = built_folder(tmp_path, gguf)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    (folder / MANIFEST_NAME).write_text(json.dumps({**manifest, "format": FORMAT_VERSION + 1}))
    assert not is_complete(folder)
    (folder / MANIFEST_NAME).write_text('{"format": 1, "files"')
    assert not is_complete(folder)


def test_folder_built_from_another_source_is_incomplete(tmp_path: Path, gguf: Path) -> None:
    folder = built_folder(tmp_path, gguf)
    assert not is_complete(folder, {"file": gguf.name, "size": 1})


def test_first_call_converts_and_later_calls_reuse(tmp_path: Path, gguf: Path, converter: FakeConverter) -> None:
    cache = tmp_path / "cache"
    first = ensure_embedded_model(cache, gguf)
    second = ensure_embedded_model(cache, gguf)
    assert first == second == cache / MODEL_DIR_NAME
    assert converter.calls == 1
    assert is_complete(first, source_identity(gguf))


def test_incomplete_folder_is_rebuilt(tmp_path: Path, gguf: Path, converter: FakeConverter) -> None:
    cache = tmp_path / "cache"
    folder = ensure_embedded_model(cache, gguf)
    (folder / "tokenizer.json").unlink()
    (folder / "stale-leftover").write_text("x")
    assert ensure_embedded_model(cache, gguf) == folder
    assert converter.calls == 2
    assert (folder / "tokenizer.json").is_file()
    assert not (folder / "stale-leftover").exists()


def test_changed_source_triggers_rebuild(tmp_path: Path, gguf: Path, converter: FakeConverter) -> None:
    cache = tmp_path / "cache"
    ensure_embedded_model(cache, gguf)
    gguf.write_bytes(b"GGUF" + b"\2" * 200)
    ensure_embedded_model(cache, gguf)
    assert converter.calls == 2


def test_failed_conversion_leaves_no_folder(tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_model, "convert_gguf", FakeConverter(fail=True))
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_embedded_model(cache, gguf)
    assert not (cache / MODEL_DIR_NAME).exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.vllm
def test_gguf_is_found_in_the_installed_package() -> None:
    path = embedded_model.locate_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
