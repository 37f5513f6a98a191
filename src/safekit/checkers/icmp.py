"""ICMP echo in-process: the split-brain checker pings its witness several times a second.

A subprocess per probe (`ping`) would cost a fork and an exec every 250 ms on every node and add
its start-up time to the answer; one raw socket shared by all probes costs neither. Replies are
matched by identifier and sequence number. Needs CAP_NET_RAW (safekitd runs as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import socket
import struct
import time

from safekit.aio import within

ECHO_REQUEST = 8
ECHO_REPLY = 0
_HEADER = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, sequence: int, payload: bytes) -> bytes:
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, sequence)
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(header + payload), ident, sequence) + payload


def parse_echo_reply(packet: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply in an IPv4 packet as a raw socket returns it, else None."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < _HEADER.size or checksum(icmp) != 0:
        return None
    kind, code, _, ident, sequence = _HEADER.unpack_from(icmp)
    if kind != ECHO_REPLY or code != 0:
        return None
    return ident, sequence


class Pinger:
    """Shares one raw ICMP socket between concurrent probes on one event loop."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._ident = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0xFFFF
        self._sequence = itertools.count(1)
        self._waiting: dict[int, tuple[str, asyncio.Future[None]]] = {}

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            sock.setblocking(False)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
            self._sock = sock
        return self._sock

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                packet, (source, _) = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            reply = parse_echo_reply(packet)
            if reply is None or reply[0] != self._ident:
                continue  # another process's ping, or not an echo reply
            entry = self._waiting.get(reply[1] & 0xFFFF)
            if entry is not None and entry[0] == source and not entry[1].done():
                entry[1].set_result(None)

    async def ping(self, address: str, timeout: float) -> bool:
        """True when `address` answers one echo request within `timeout` seconds."""
        target = str(ipaddress.IPv4Address(address))
        sock = self._socket()
        sequence = next(self._sequence) & 0xFFFF
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[sequence] = (target, future)
        try:
            payload = struct.pack("!d", time.monotonic()) + b"safekit-witness"
            try:
                sock.sendto(echo_request(self._ident, sequence, payload), (target, 0))
            except OSError:  # no route, link down: the witness is not reachable from here
                return False
            try:
                await within(future, timeout)
            except TimeoutError:
                return False
            return True
        finally:
            self._waiting.pop(sequence, None)

    async def ping_any(self, addresses: list[str], timeout: float) -> bool:
        if not addresses:
            return False
        results = await asyncio.gather(*(self.ping(a, timeout) for a in addresses))
        return any(results)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
