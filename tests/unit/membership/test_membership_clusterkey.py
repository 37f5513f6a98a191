"""Cluster key: generation, file format, safe loading, fingerprints that never show the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safekit.membership.clusterkey import (
    KEY_FILE_PREFIX,
    KEY_SIZE,
    ClusterKeyError,
    decode_key_file,
    encode_key_file,
    fingerprint,
    generate_key,
    load_key,
    save_key,
)


def test_generated_keys_are_32_random_bytes() -> None:
    a, b = generate_key(), generate_key()
    assert len(a) == KEY_SIZE and a != b


def test_file_format_round_trip() -> None:
    key = generate_key()
    text = encode_key_file(key)
    assert text.startswith(KEY_FILE_PREFIX) and text.endswith("\n") and text.count("\n") == 1
    assert decode_key_file(text) == key


def test_comments_and_blank_lines_are_allowed() -> None:
    key = generate_key()
    assert decode_key_file("# cluster prod\n\n" + encode_key_file(key) + "\n") == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "exactly one key line"),
        ("safekit-cluster-key-v1:AAAA\nsafekit-cluster-key-v1:AAAA\n", "exactly one key line"),
        ("c2VjcmV0\n", "must start with"),
        ("safekit-cluster-key-v9:AAAA\n", "not supported"),
        ("safekit-cluster-key-v1:not*base64!\n", "not valid base64"),
        ("safekit-cluster-key-v1:AAAA\n", "must decode to 32 bytes"),
    ],
)
def test_bad_key_text_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ClusterKeyError, match=message):
        decode_key_file(text, source="/etc/safekit/cluster.key")


def test_errors_never_echo_key_material() -> None:
    secret_line = "safekit-cluster-key-v1:" + "Zm9vYmFyYmF6cXV4" * 2 + "!"
    with pytest.raises(ClusterKeyError) as info:
        decode_key_file(secret_line)
    assert "Zm9vYmFy" not in str(info.value)


def test_save_then_load(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "cluster.key"
    save_key(path, key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key(path) == key
    with pytest.raises(FileExistsError):
        save_key(path, generate_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644])
def test_file_accessible_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(encode_key_file(generate_key()))
    path.chmod(mode)
    with pytest.raises(ClusterKeyError, match=rf"chmod 600 {path}") as info:
        load_key(path)
    assert f"{mode:04o}" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(encode_key_file(generate_key()))
    path.chmod(0o600)
    os.chown(path, 54321, 54321)
    with pytest.raises(ClusterKeyError, match="owned by uid 54321"):
        load_key(path)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ClusterKeyError, match="genkey"):
        load_key(tmp_path / "absent.key")


def test_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir(mode=0o700)
    with pytest.raises(ClusterKeyError, match="regular file"):
        load_key(target)


def test_fingerprint_is_short_stable_and_does_not_reveal_the_key() -> None:
    key = bytes(range(32))
    fp = fingerprint(key)
    assert fp == fingerprint(bytes(range(32)))
    assert fp != fingerprint(bytes(32))
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16
    assert key.hex() not in fp and key.hex()[:16] not in fp


def test_fingerprint_refuses_a_non_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        fingerprint(b"short")
