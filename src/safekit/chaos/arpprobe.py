"""The client-side judge of VIP ownership: who answers ARP for the virtual IP, and when.

Runs on the lab's client host (`python -m safekit.chaos.arpprobe IFACE VIP`), never on a node:
the nodes' own word is not evidence. Every INTERVAL seconds it broadcasts an ARP request for the
VIP from a raw AF_PACKET socket. Each request carries its sequence number in the sender hardware
address (02:cc:SS:SS:SS:SS) and 0.0.0.0 as sender IP (an RFC 5227 probe: answered by every host
that has the address, and recorded in no one's neighbour table). A reply is addressed to that
hardware address, so every reply names the request it answers, however late it arrives.

Output, one line per event (times are CLOCK_MONOTONIC, shared by every process on the machine):

    S SEQ T            request SEQ sent at T
    R SEQ T MAC        request SEQ answered by MAC, received at T
    G T MAC OP         a gratuitous ARP for the VIP (sender IP = target IP = VIP) from MAC
    O T MAC            another ARP reply for the VIP (to the client's own kernel)

`judge.vip_owners` turns these into "seconds with two VIP owners".
"""

from __future__ import annotations

import select
import signal
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
PROBE_OUI = b"\x02\xcc"
BROADCAST = b"\xff" * 6
DEFAULT_INTERVAL = 0.03


def probe_mac(seq: int) -> bytes:
    """The sender hardware address that names request `seq`."""
    return PROBE_OUI + struct.pack("!I", seq & 0xFFFFFFFF)


def request_frame(own_mac: bytes, seq: int, vip: bytes) -> bytes:
    """An Ethernet broadcast ARP request (an RFC 5227 probe) for `vip`, numbered `seq`."""
    eth = BROADCAST + own_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + probe_mac(seq) + b"\0" * 4 + b"\0" * 6 + vip
    return eth + arp


def parse_arp(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """(op, sender MAC, sender IP, target MAC, target IP) of an Ethernet ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return op, frame[22:28], frame[28:32], frame[32:38], frame[38:42]


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def classify(frame: bytes, vip: bytes) -> tuple[str, int | None, str, int] | None:
    """What a frame says about the VIP: ("R", seq, MAC, op), ("G", None, MAC, op), ("O", ...)."""
    parsed = parse_arp(frame)
    if parsed is None:
        return None
    op, sha, spa, tha, tpa = parsed
    if spa != vip:
        return None
    if tpa == vip:
        return "G", None, mac_text(sha), op
    if op == 2 and tha[:2] == PROBE_OUI:
        return "R", struct.unpack("!I", tha[2:])[0], mac_text(sha), op
    if op == 2:
        return "O", None, mac_text(sha), op
    return None


def run(iface: str, vip_text: str, interval: float, out: object = None) -> None:
    vip = socket.inet_aton(vip_text)
    write = sys.stdout.write if out is None else out.write  # type: ignore[attr-defined]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    own_mac: bytes = sock.getsockname()[4]
    sock.setblocking(False)
    seq = 0
    next_send = time.monotonic()
    lines: list[str] = []
    while True:
        now = time.monotonic()
        if now >= next_send:
            try:
                sock.send(request_frame(own_mac, seq, vip))
                lines.append(f"S {seq} {now:.6f}")
            except OSError as exc:  # the client's cable pulled: keep trying
                lines.append(f"E {now:.6f} {exc.errno}")
            seq += 1
            next_send = max(next_send + interval, now + interval / 2)
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        while ready:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                break
            seen = classify(frame, vip)
            if seen is None:
                continue
            kind, number, mac, op = seen
            t = time.monotonic()
            if kind == "R":
                lines.append(f"R {number} {t:.6f} {mac}")
            elif kind == "G":
                lines.append(f"G {t:.6f} {mac} {op}")
            else:
                lines.append(f"O {t:.6f} {mac}")
        if lines:
            write("\n".join(lines) + "\n")
            sys.stdout.flush()
            lines.clear()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        sys.stderr.write("usage: python -m safekit.chaos.arpprobe IFACE VIP [INTERVAL_S]\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    interval = float(args[2]) if len(args) == 3 else DEFAULT_INTERVAL
    try:
        run(args[0], args[1], interval)
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
