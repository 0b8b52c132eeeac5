from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from reference_server.config import digest, keys_from_environment, load_keys_file, mask


def test_toml_and_json_keys_files_with_keys_or_digests(tmp_path: Path) -> None:
    toml = tmp_path / "k.toml"
    toml.write_text(
        '[[keys]]\nname = "a"\nkey = "esecret_aaaa"\nconcurrency_limit = 5\n'
        f'[[keys]]\nname = "b"\nsha256 = "{hashlib.sha256(b"esecret_bbbb").hexdigest()}"\n'
    )
    toml.chmod(0o600)
    a, b = load_keys_file(toml)
    assert (a.name, a.sha256, a.concurrency_limit) == ("a", digest("esecret_aaaa"), 5)
    assert (b.name, b.sha256, b.concurrency_limit) == ("b", digest("esecret_bbbb"), None)
    js = tmp_path / "k.json"
    js.write_text(json.dumps({"keys": [{"key": "esecret_cccc"}]}))
    js.chmod(0o600)
    (c,) = load_keys_file(js)
    assert c.name == "file-1" and c.sha256 == digest("esecret_cccc")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[[keys]]\nname = "x"\n', "needs 'key' or 'sha256'"),
        ('[[keys]]\nsha256 = "abcd"\n', "64 hex digits"),
        ('[[keys]]\nkey = "k"\nconcurrency_limit = 0\n', "invalid concurrency_limit"),
        ('keys = "nope"\n', "expected a list"),
    ],
)
def test_bad_keys_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_keys_file(path)


def test_world_readable_keys_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[[keys]]\nkey = "esecret_aaaa"\n')
    path.chmod(0o644)
    load_keys_file(path)
    assert "readable by group or others" in caplog.text


def test_environment_keys() -> None:
    keys = keys_from_environment({"ANYSCALE_API_KEY": "esecret_env", "REFERENCE_SERVER_API_KEYS": "k1, k2"})
    assert [k.sha256 for k in keys] == [digest("k1"), digest("k2"), digest("esecret_env")]


def test_mask_never_shows_more_than_the_last_four_characters() -> None:
    assert mask("esecret_abcdefghijklmnop") == "esecret_…mnop"
    assert mask("esecret_short") == "esecret_…"
