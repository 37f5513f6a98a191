"""The derived key and its file, the replay guard, and `safekit arbiter` argument handling."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from safekit import cli
from safekit.arbiter import keys
from safekit.arbiter.cli import ArbiterCliError, parse_endpoint
from safekit.arbiter.replay import SequenceGuard
from safekit.membership import clusterkey


def test_arbiter_key_is_derived_one_way_and_differs_per_cluster() -> None:
    a, b = keys.derive_arbiter_key(b"a" * 32), keys.derive_arbiter_key(b"b" * 32)
    assert a != b and len(a) == 32
    assert a != b"a" * 32
    assert keys.derive_arbiter_key(b"a" * 32) == a
    assert keys.cluster_id(a) != keys.cluster_id(b) and len(keys.cluster_id(a)) == 8


def test_key_command_writes_a_private_file_idempotently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_key = tmp_path / "cluster.key"
    clusterkey.save_key(cluster_key, b"k" * 32)
    out = tmp_path / "witness" / "arbiter.key"
    assert cli.main(["arbiter", "key", "--cluster-key", str(cluster_key), "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["changed"] is True
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith(keys.ARBITER_KEY_PREFIX)
    assert keys.load_key(out) == keys.derive_arbiter_key(b"k" * 32)
    assert "k" * 10 not in out.read_text()
    assert cli.main(["arbiter", "key", "--cluster-key", str(cluster_key), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False


def test_key_command_refuses_to_replace_another_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_key = tmp_path / "cluster.key"
    clusterkey.save_key(cluster_key, b"k" * 32)
    out = tmp_path / "arbiter.key"
    keys.write_key_file(out, keys.derive_arbiter_key(b"o" * 32))
    assert cli.main(["arbiter", "key", "--cluster-key", str(cluster_key), "--out", str(out)]) == 1
    assert "holds another key" in capsys.readouterr().err
    assert cli.main(["arbiter", "key", "--cluster-key", str(cluster_key), "--out", str(out), "--force"]) == 0


def test_a_cluster_key_is_not_accepted_as_an_arbiter_key(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    clusterkey.save_key(path, b"k" * 32)
    with pytest.raises(keys.ArbiterKeyError, match="this is a cluster key"):
        keys.load_key(path)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arbiter.key"
    keys.write_key_file(path, keys.derive_arbiter_key(b"k" * 32))
    os.chmod(path, 0o644)
    with pytest.raises(keys.ArbiterKeyError, match="chmod 600"):
        keys.load_key(path)


def test_serve_refuses_a_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["arbiter", "serve", "--listen", "127.0.0.1:19999", "--key-file", str(tmp_path / "none")])
        == 1
    )
    assert "arbiter key file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.254", ("198.18.0.254", 9455)),
        ("198.18.0.254:9000", ("198.18.0.254", 9000)),
        ("::1", ("::1", 9455)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_endpoints(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "witness", "1.2.3.4:0", "1.2.3.4:99999", "1.2.3.4:x", "[::1"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(ArbiterCliError):
        parse_endpoint(text)


def test_replay_guard_accepts_only_increasing_sequences_per_session() -> None:
    guard = SequenceGuard()
    s1, s2 = (b"c", "node1", b"boot1"), (b"c", "node1", b"boot2")
    assert guard.accept(s1, 1) and guard.accept(s1, 2)
    assert not guard.accept(s1, 2) and not guard.accept(s1, 1)
    assert guard.accept(s2, 1)  # a new boot of the node numbers from 1 again
    assert guard.accept(s1, 10)


def test_replay_guard_is_bounded_but_never_forgets_a_lease_holder() -> None:
    guard = SequenceGuard(capacity=3)
    holder = (b"c", "node1", b"boot")
    guard.accept(holder, 5)
    for i in range(10):
        guard.accept((b"c", f"n{i}", b"b"), 1, keep={holder})
    assert len(guard) == 3
    assert not guard.accept(holder, 5)  # still remembered: the replay is refused
