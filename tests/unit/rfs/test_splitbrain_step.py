"""The split-brain steps the native secondary runs (`python -m safekit.rfs splitbrain-save SPEC` and
`splitbrain-annotate SPEC DIR`): what they print, their exit codes, and that they read the pending
record from secondary.json as the caller left it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safekit.membership import clusterkey
from safekit.rfs import channel, splitbrain, splitbrain_step
from safekit.rfs.spec import DirSpec, RfsSpec

SRC = Path(__file__).resolve().parents[3] / "src"


def make_spec(tmp_path: Path, **extra: object) -> Path:
    key_file = tmp_path / "cluster.key"
    clusterkey.save_key(key_file, clusterkey.generate_key())
    state_dir = tmp_path / "var" / "modules" / "app" / "rfs"
    state_dir.mkdir(parents=True)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "orders.db").write_bytes(b"written by node2 during the split")
    rfs = RfsSpec(
        module="app",
        node="node2",
        peer="node1",
        dirs=(DirSpec(str(data)),),
        local_addr="127.0.0.1",
        peer_addr="127.0.0.2",
        port=1,
        key_file=str(key_file),
        state_dir=str(state_dir),
        extra=dict(extra),
    )
    spec = tmp_path / "spec.json"
    spec.write_text(rfs.to_json())
    return spec


def pending(spec: Path, record: dict[str, object] | None) -> Path:
    rfs = RfsSpec.load(spec)
    target = Path(rfs.state_dir).parent / "splitbrain" / "20260101T000000Z"
    state = {"epoch": "", "in_sync": False, "splitbrain": None}
    if record is not None:
        state["splitbrain"] = {"dir": str(target), **record}
    (Path(rfs.state_dir) / "secondary.json").write_text(json.dumps(state))
    return target


def step(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "safekit.rfs", *args], capture_output=True, env=env, timeout=60, check=False
    )


def test_save_prints_the_event_line_and_forgets_nothing_else(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    target = pending(spec, {"phase": "saving", "peer": "node1", "generation": 4, "peer_generation": 5})
    result = step("splitbrain-save", str(spec))
    assert result.returncode == splitbrain_step.EXIT_SAVED, result.stderr
    event = channel.decode_event(result.stdout)
    assert isinstance(event, channel.SplitBrainSaved)
    assert channel.encode_event(event) == result.stdout  # one line, the encoder's bytes
    assert event.path == str(target) and event.files == 1 and event.winner == "node1"
    saved = target / splitbrain.saved_as(str(tmp_path / "data"), "sub/orders.db")
    assert saved.read_bytes() == b"written by node2 during the split"
    assert b"split brain" in result.stderr  # the report goes to the module log
    # the state file is the caller's: the step does not write it
    state = json.loads((Path(RfsSpec.load(spec).state_dir) / "secondary.json").read_text())
    assert state["splitbrain"]["phase"] == "saving"
    # again (a crash before the caller recorded "saved"): the manifest is kept, not redone
    (tmp_path / "data" / "sub" / "orders.db").write_bytes(b"changed since")
    again = step("splitbrain-save", str(spec))
    assert again.returncode == 0 and again.stdout == result.stdout
    assert saved.read_bytes() == b"written by node2 during the split"


@pytest.mark.parametrize("record", [None, {"phase": "saved"}])
def test_save_without_a_pending_save_fails(tmp_path: Path, record: dict[str, object] | None) -> None:
    spec = make_spec(tmp_path)
    pending(spec, record)
    result = step("splitbrain-save", str(spec))
    assert result.returncode == splitbrain_step.EXIT_FAILED
    assert result.stdout.startswith(b"split brain: no pending save in ")


def test_save_that_cannot_be_made_prints_the_python_secondary_s_reason(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    target = pending(spec, {"phase": "saving", "peer": "node1"})
    target.parent.write_bytes(b"a file where the saves go")
    result = step("splitbrain-save", str(spec))
    assert result.returncode == splitbrain_step.EXIT_FAILED
    text = result.stdout.decode()
    assert text.startswith(f"split brain: could not save what node2 changed since the split under {target} (")
    assert text.endswith("waits until it can (free space on that file system)\n")


def test_annotate_completes_the_manifest(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    target = pending(spec, {"phase": "saving", "peer": "node1"})
    assert step("splitbrain-save", str(spec)).returncode == 0
    (tmp_path / "data" / "sub" / "orders.db").unlink()  # the resync: the winner has no such file
    result = step("splitbrain-annotate", str(spec), str(target))
    assert result.returncode == 0 and result.stdout == b""
    manifest = json.loads((target / splitbrain.MANIFEST).read_text())
    assert manifest["resync"]["on_winner"] == {str(splitbrain.OnWinner.ABSENT): 1}


def test_usage(tmp_path: Path) -> None:
    assert step("splitbrain-save").returncode == 2
    assert step("splitbrain-annotate", "x").returncode == 2
