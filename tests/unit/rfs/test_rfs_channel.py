"""The control channel between safekitd and a replication process (src/safekit/rfs/channel.py):
every message round-trips, a known message with a field of the wrong type is refused with a
message, and what a newer peer sends (an unknown name, an extra field) does not break an older one.
"""

from __future__ import annotations

import json

import pytest

from safekit.rfs import channel

EVENTS: list[channel.Event] = [
    channel.Mounted(("/srv/data", "/srv/logs")),
    channel.Listening("198.18.0.2", 9454),
    channel.Ready(in_sync=True, epoch="e1", trusted=True),
    channel.Connected("node1", "e1"),
    channel.Degraded("sendtimeout"),
    channel.Disconnected("connection lost"),
    channel.Resyncing("checksum"),
    channel.Progress(42),
    channel.InSync(generation=7),
    channel.InSync(mode="journal", seconds=0.25, bytes=4096),
    channel.ApplyError("No space left on device", 28),
    channel.Failed("cannot mount"),
    channel.SplitBrainSaved("/var/safekit/modules/m/splitbrain/T", 3, 100, 0, 1, "2026-12-05", "node1"),
    channel.VerifyResult(ok=False, checked=10, differences=("a: size",), reason=""),
    channel.StatusReport("in_sync", 12, 3, {"writes": 5, "bytes": 1024}),
]
COMMANDS: list[channel.Command] = [
    channel.Stop(),
    channel.DegradeOk(),
    channel.Fence(),
    channel.PeerLost(),
    channel.ReplicationLanLost(),
    channel.SetGeneration(9),
    channel.Fullsync(),
    channel.Verify(),
    channel.QueryStatus(),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_as_one_json_line(event: channel.Event) -> None:
    line = channel.encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["event"] == event.NAME
    assert channel.decode_event(line) == event


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command: channel.Command) -> None:
    line = channel.encode_command(command)
    assert json.loads(line)["cmd"] == command.NAME
    assert channel.decode_command(line) == command


def test_the_wire_names_are_the_contract_of_docs_replication() -> None:
    # A native replication process speaks these: renaming one is a protocol change.
    assert channel.encode_command(channel.SetGeneration(3)) == b'{"cmd":"generation","value":3}\n'
    assert channel.encode_event(channel.Degraded("x")) == b'{"event":"degraded","reason":"x"}\n'
    assert channel.decode_event(b'{"event":"error","reason":"r","errno":5}') == channel.ApplyError("r", 5)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"cmd": "stop"}',  # a command is not an event
        b'{"event": 3}',
        b'{"event": "in_sync", "generation": "7"}',
        b'{"event": "progress", "percent": true}',
        b'{"event": "mounted", "dirs": "/srv"}',
        b'{"event": "mounted", "dirs": [1]}',
        b'{"event": "verify", "ok": 1}',
    ],
)
def test_a_malformed_event_is_a_channel_error_with_a_message(line: bytes) -> None:
    with pytest.raises(channel.ChannelError) as caught:
        channel.decode_event(line)
    assert str(caught.value)


def test_what_a_newer_peer_sends_is_tolerated() -> None:
    assert channel.decode_event(b'{"event": "tuned", "x": 1}') == channel.UnknownEvent("tuned")
    assert channel.decode_command(b'{"cmd": "compress"}') == channel.UnknownCommand("compress")
    assert channel.decode_event(b'{"event": "progress", "percent": 5, "eta": 3}') == channel.Progress(5)
    assert channel.decode_event(b'{"event": "in_sync"}') == channel.InSync()  # fields default


def test_a_line_over_the_bound_is_refused_before_parsing() -> None:
    with pytest.raises(channel.ChannelError, match="at most"):
        channel.decode_event(b'{"event": "failed", "reason": "' + b"x" * channel.MAX_LINE + b'"}')


def test_describe_gives_a_json_view_of_any_message() -> None:
    assert channel.describe(channel.Mounted(("/a",))) == {"event": "mounted", "dirs": ["/a"]}
    assert channel.describe(channel.Exited(-9)) == {"event": "exited", "code": -9}
    assert channel.describe(channel.SetGeneration(2)) == {"cmd": "generation", "value": 2}
