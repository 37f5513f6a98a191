"""Independent check of the wire v2 test vectors (docs/replication-wire-v2.md, "Test vectors").

Written from the document alone with Python's `cryptography` package (not from the C code), it
recomputes every vector and compares it with the bytes the document lists and the C unit tests
check. `make -C native xcheck`; exit status 0 when all match.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

EXPECTED = {
    "V1 hello_key": "d8e94d22b90c24003dd4400025d344466dfedaa693dad69fb50c3133a5cc0142",
    "V2 k_p2s": "4b1caf1386a7b4e27282bdbd9dddce062d2b388b2df707de064484e6e28d8506",
    "V2 k_s2p": "5b03b3cd37e68631e7e9ba7cf4447dfa1146863faeb8fbeda0c7f2604494e3b8",
    "V3 frame": "534b5246020b000000000000000000070000001b0000000070ad95f3c8e03f6c"
    "2317872fce5e0f9db2bdcc82abd7af6f7c70c950ca2575375094bb2e415dcb98a1efbd",
    "V4 frame": "534b52460228000000000000000000010000001800000000c8f6ea05d8852a2d"
    "8c5c0a496d8c787ad4eceb73b14bf6f52623f7e750c613f7fe7530414eb0053b",
    "V5 HELLO": "534b52460201000000000000000000000000004c000000000202000000061011"
    "12131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f0005"
    "706773716c00056e6f64653100056e6f64653200026531000000000000000800"
    "0000010090d3b904ef8a141da8172275653f0ed1",
    "V5 HELLO_OK": "534b524602020000000000000000000000000050000000000201404142434445"
    "464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f428d32ce6f16"
    "d3fad97909c27c74535ea374500695dd22a34bd00a7e9d1d31e600056e6f6465"
    "3200026531010100961ce7166021bd47bf76eecfed989ea7",
    "V5 HELLO_DONE": "534b52460203000000000000000000000000002000000000b45244062c29d189"
    "87374d4579e4c3f2efce8a4c264a57901fc2b774072115b47726b5a34c55c789becc42c6236259b4",
    "V5 th": "a4ae7fae0dc9b737c8792afba52311864f4f731c722da50a6cf57d59a54be452",
    "V5 k_p2s": "cb33a3be715408c97cdb1ae11abb451eccbabe23068be3511048f2ef9de0796c",
    "V5 k_s2p": "bb54bc66bea3f621261d0faf805e6ff7684e485345ab2347f2231cc146009cef",
}

KEY = bytes(range(32))
NONCE_P = bytes(range(0x10, 0x30))
NONCE_S = bytes(range(0x40, 0x60))


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def lp16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def header(ftype: int, seq: int, length: int, flags: int = 0, dir_index: int = 0) -> bytes:
    return b"SKRF" + struct.pack(">BBHQII", 2, ftype, flags, seq, length, dir_index)


def session_key(label: bytes, th: bytes, suite: int = 1) -> bytes:
    info = label + b"\0" + bytes([2, suite]) + lp16(b"pgsql") + lp16(b"node1") + lp16(b"node2") + th
    return hkdf(KEY, NONCE_P + NONCE_S, info)


def nonce(direction: int, seq: int) -> bytes:
    return struct.pack(">IQ", direction, seq)


def compute() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    hello_key = hkdf(KEY, b"safekit rfs v2 hello", b"pgsql")
    out["V1 hello_key"] = hello_key
    th2 = bytes(range(0x80, 0xA0))
    p2s, s2p = session_key(b"safekit rfs v2 p2s", th2), session_key(b"safekit rfs v2 s2p", th2)
    out["V2 k_p2s"], out["V2 k_s2p"] = p2s, s2p

    payload = lp16(b"data/f") + struct.pack(">Q", 4096) + b"hello world"
    hdr = header(11, 7, len(payload))
    out["V3 frame"] = hdr + AESGCM(p2s).encrypt(nonce(1, 7), payload, hdr)
    ack = struct.pack(">QQQ", 7, 7, 7)
    hdr = header(40, 1, len(ack))
    out["V4 frame"] = hdr + ChaCha20Poly1305(s2p).encrypt(nonce(2, 1), ack, hdr)

    def handshake_frame(ftype: int, body: bytes) -> bytes:
        h = header(ftype, 0, len(body))
        return h + body + hmac.new(hello_key, h + body, "sha256").digest()[:16]

    hello = handshake_frame(
        1,
        bytes([2, 2])
        + struct.pack(">I", (1 << 1) | (1 << 2))
        + NONCE_P
        + lp16(b"pgsql")
        + lp16(b"node1")
        + lp16(b"node2")
        + lp16(b"e1")
        + struct.pack(">QIB", 8, 1, 0),
    )
    hello_hash = hashlib.sha256(hello).digest()
    hello_ok = handshake_frame(
        2, bytes([2, 1]) + NONCE_S + hello_hash + lp16(b"node2") + lp16(b"e1") + bytes([1, 1, 0])
    )
    th = hashlib.sha256(hello_hash + hello_ok).digest()
    k_p2s, k_s2p = session_key(b"safekit rfs v2 p2s", th), session_key(b"safekit rfs v2 s2p", th)
    hdr = header(3, 0, 32)
    out["V5 HELLO"], out["V5 HELLO_OK"] = hello, hello_ok
    out["V5 HELLO_DONE"] = hdr + AESGCM(k_p2s).encrypt(nonce(1, 0), th, hdr)
    out["V5 th"], out["V5 k_p2s"], out["V5 k_s2p"] = th, k_p2s, k_s2p
    return out


def main() -> int:
    got = compute()
    bad = [name for name, want in EXPECTED.items() if got[name].hex() != want]
    for name in EXPECTED:
        print(f"{'MISMATCH' if name in bad else 'ok'} {name}")
    print(f"{len(EXPECTED) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
