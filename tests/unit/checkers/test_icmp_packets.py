"""ICMP echo packets built and parsed without a network."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from safekit.checkers.icmp import checksum, echo_request, parse_echo_reply


def as_reply_in_ip(request: bytes) -> bytes:
    """What the kernel hands a raw socket for the reply: an IPv4 header, then ICMP type 0."""
    body = bytes([0]) + request[1:2] + b"\0\0" + request[4:]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    ip_header = bytes([0x45]) + bytes(19)
    return ip_header + body


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_a_reply_to_our_request_is_recognised(ident: int, sequence: int, payload: bytes) -> None:
    request = echo_request(ident, sequence, payload)
    assert checksum(request) == 0
    assert parse_echo_reply(as_reply_in_ip(request)) == (ident, sequence)


def test_requests_and_corrupted_replies_are_not_replies() -> None:
    request = echo_request(7, 9, b"x")
    assert parse_echo_reply(bytes([0x45]) + bytes(19) + request) is None  # type 8: a request
    reply = bytearray(as_reply_in_ip(request))
    reply[-1] ^= 0xFF
    assert parse_echo_reply(bytes(reply)) is None
    assert parse_echo_reply(b"short") is None
