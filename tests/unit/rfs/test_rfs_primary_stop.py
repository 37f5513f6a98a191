"""The primary's replication process stops without deadlocking on its own mount.

Once its FUSE loop has ended nothing answers FUSE requests: a `stat` of a replicated directory
(bound over by this very mount) would block forever, in this process too - the cause of the
"did not stop within 30 s: killed" seen at every role change. These tests pin the order of the
clean-up and the paths it may touch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyfuse3
import pytest
import trio

from safekit.host import mounts
from safekit.rfs import channel, control, primary, spec


def make_process(tmp_path: Path) -> primary.PrimaryProcess:
    rfs = spec.RfsSpec(
        module="am",
        node="n1",
        peer="n2",
        dirs=(spec.DirSpec(str(tmp_path / "data")), spec.DirSpec(str(tmp_path / "logs"))),
        local_addr="127.0.0.1",
        peer_addr="127.0.0.2",
        port=4801,
        key_file=str(tmp_path / "key"),
        state_dir=str(tmp_path / "state"),
    )
    process = primary.PrimaryProcess(rfs)
    process.mounted = True
    return process


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Records the clean-up steps; fails the test if a replicated directory is looked through."""
    record: list[tuple[str, Any]] = []
    forbidden = {str(tmp_path / "data"), str(tmp_path / "logs")}
    real_stat, real_lstat = os.stat, os.lstat

    def guard(real: Any) -> Any:
        def checked(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, (str, Path)) and str(path) in forbidden:
                raise AssertionError(f"{path} looked through after the FUSE loop ended")
            return real(path, *args, **kwargs)

        return checked

    monkeypatch.setattr(os, "stat", guard(real_stat))
    monkeypatch.setattr(os, "lstat", guard(real_lstat))
    monkeypatch.setattr(pyfuse3, "close", lambda unmount=True: record.append(("close", unmount)))
    monkeypatch.setattr(mounts, "detach_ours", lambda path, recorded=(): record.append(("detach", path)))
    return record


def test_stop_aborts_the_fuse_connection_before_touching_the_directories(
    tmp_path: Path, calls: list[tuple[str, Any]]
) -> None:
    process = make_process(tmp_path)
    process.unmount()
    assert calls == [
        ("close", True),  # /dev/fuse closed first: any request left fails with ENOTCONN, never hangs
        ("detach", str(tmp_path / "data")),
        ("detach", str(tmp_path / "logs")),
        ("detach", str(tmp_path / "state" / "mnt")),
    ]
    process.unmount()  # idempotent
    assert len(calls) == 4


def test_when_safekitd_died_the_dead_mounts_stay_over_the_directories(
    tmp_path: Path, calls: list[tuple[str, Any]]
) -> None:
    process = make_process(tmp_path)
    process.abandoned = True
    process.unmount()
    # the application (still running) gets ENOTCONN instead of writing unreplicated files
    assert calls == [("close", False)]


def run_control(process: primary.PrimaryProcess, lines: list[bytes], monkeypatch: Any) -> None:
    async def fake_commands() -> AsyncIterator[channel.Command]:
        for line in lines:  # as control.commands() decodes them from stdin
            yield channel.decode_command(line)

    monkeypatch.setattr(control, "commands", fake_commands)
    process.replicator = SimpleNamespace(stopping=False, connected=False)  # type: ignore[assignment]

    async def main() -> None:
        with trio.CancelScope() as scope:
            await process._control(scope)

    trio.run(main)


def test_a_stop_command_is_a_stop_and_a_closed_channel_means_safekitd_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = make_process(tmp_path)
    run_control(stopped, [b'{"cmd": "status-unknown"}', b'{"cmd": "stop"}'], monkeypatch)
    assert not stopped.abandoned
    orphan = make_process(tmp_path)
    run_control(orphan, [], monkeypatch)
    assert orphan.abandoned
