"""Fuzz the control channel's decoders (rfs.channel): safekitd decodes the replication process's
events from its stdout, the replication process decodes safekitd's commands from its stdin.

Contract: only `ChannelError` (with a message) comes out of a decoder; a decoded message is one of
the channel's types (an unknown name is kept as such, never guessed); whatever decodes to a known
message re-encodes to a line that decodes to the same message.
"""

from __future__ import annotations

import json
import typing

import pytest
from fuzz_support import count, fuzz_settings, mutated, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.rfs import channel

pytestmark = pytest.mark.timeout(timeout_seconds())

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_event_names = st.sampled_from([*(t.NAME for t in typing.get_args(channel.Event) if t.NAME), "exited", "x"])
_command_names = st.sampled_from([*(t.NAME for t in typing.get_args(channel.Command) if t.NAME), "y"])
_fields = st.sampled_from(
    ["reason", "mode", "generation", "seconds", "bytes", "dirs", "percent", "ok", "checked",
     "differences", "value", "epoch", "in_sync", "trusted", "peer", "port", "addr", "errno", "files",
     "since", "state", "seq"]
)  # fmt: skip


@st.composite
def json_lines(draw: st.DrawFn, key: str, names: st.SearchStrategy[str]) -> bytes:
    obj = {key: draw(names), **draw(st.dictionaries(_fields, _values, max_size=5))}
    line = json.dumps(obj).encode()
    return draw(st.just(line) | mutated(line))


def _check_event(line: bytes) -> None:
    count("rfs channel event")
    event, _ = run_decoder("channel event", lambda: channel.decode_event(line), channel.ChannelError)
    if event is None or isinstance(event, channel.UnknownEvent):
        return
    assert isinstance(event, typing.get_args(channel.Event))
    assert channel.decode_event(channel.encode_event(event)) == event


def _check_command(line: bytes) -> None:
    count("rfs channel command")
    command, _ = run_decoder("channel command", lambda: channel.decode_command(line), channel.ChannelError)
    if command is None or isinstance(command, channel.UnknownCommand):
        return
    assert isinstance(command, typing.get_args(channel.Command))
    assert channel.decode_command(channel.encode_command(command)) == command


@fuzz_settings()
@given(json_lines("event", _event_names) | st.binary(max_size=200))
def test_event_decoder(line: bytes) -> None:
    _check_event(line)


@fuzz_settings()
@given(json_lines("cmd", _command_names) | st.binary(max_size=200))
def test_command_decoder(line: bytes) -> None:
    _check_command(line)
