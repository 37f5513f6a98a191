"""The arbiter's key: derived from the cluster key, so the witness host cannot forge heartbeats.

This module owns the derivation (``arbiter_key = HMAC-SHA256(cluster_key, b"safekit arbiter key v1")``),
the short cluster id that tells a multi-cluster arbiter which key checks a datagram, and the key
file the witness host keeps. HMAC-SHA256 is one-way: holding the arbiter key reveals nothing of
the cluster key, so a compromised witness host can at worst disturb leases (availability), never
impersonate a node on the heartbeat or replication links.

Arbiter key file format, one line of ASCII (the cluster key's format with its own prefix, so the
two files cannot be mixed up)::

    safekit-arbiter-key-v1:<standard base64 of exactly 32 bytes>

Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from safekit.membership.clusterkey import KEY_FILE_PREFIX as CLUSTER_KEY_PREFIX
from safekit.membership.clusterkey import KEY_SIZE, check_key, read_secret_text

ARBITER_KEY_PREFIX = "safekit-arbiter-key-v1:"
MAX_KEY_FILE_BYTES = 4096
CLUSTER_ID_SIZE = 8
_DERIVATION_LABEL = b"safekit arbiter key v1"
_CLUSTER_ID_DOMAIN = b"safekit arbiter cluster id v1\x00"


class ArbiterKeyError(Exception):
    """A key file is missing, unsafe or unreadable. The message names the file and the fix, no key bytes."""


def derive_arbiter_key(cluster_key: bytes) -> bytes:
    """The arbiter key of the cluster whose key is `cluster_key` (32 bytes)."""
    check_key(cluster_key)
    return hmac.new(cluster_key, _DERIVATION_LABEL, hashlib.sha256).digest()


def cluster_id(arbiter_key: bytes) -> bytes:
    """The 8-byte id that names a cluster on the wire: a domain-separated hash of its arbiter key.

    Public (it travels in clear); it only selects which key verifies a datagram.
    """
    check_key(arbiter_key)
    return hashlib.sha256(_CLUSTER_ID_DOMAIN + arbiter_key).digest()[:CLUSTER_ID_SIZE]


def encode_key_file(arbiter_key: bytes) -> str:
    """The arbiter key file text for `arbiter_key` (one line, newline-terminated)."""
    check_key(arbiter_key)
    return ARBITER_KEY_PREFIX + base64.b64encode(arbiter_key).decode("ascii") + "\n"


def decode_key_file(text: str, *, source: str = "arbiter key") -> bytes:
    """Parse arbiter key file text; `source` (usually the path) is named in errors."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) != 1:
        raise ArbiterKeyError(
            f"{source}: expected exactly one key line '{ARBITER_KEY_PREFIX}<base64>', found {len(lines)}; "
            "write one with 'safekit arbiter key --cluster-key FILE --out FILE'"
        )
    line = lines[0]
    if line.startswith(CLUSTER_KEY_PREFIX):
        raise ArbiterKeyError(
            f"{source}: this is a cluster key, not an arbiter key; the witness host must hold only the "
            "derived key: 'safekit arbiter key --cluster-key FILE --out FILE'"
        )
    if not line.startswith(ARBITER_KEY_PREFIX):
        raise ArbiterKeyError(f"{source}: the key line must start with '{ARBITER_KEY_PREFIX}'")
    try:
        key = base64.b64decode(line[len(ARBITER_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ArbiterKeyError(f"{source}: the key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ArbiterKeyError(f"{source}: the key must decode to {KEY_SIZE} bytes, it decodes to {len(key)}")
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read and validate the arbiter key file at `path`: the cluster key's safety rules (a regular
    file, no group/other permission bit, owned by this user or root, checked on the opened file)."""
    text = read_secret_text(
        path,
        what="arbiter key",
        missing="write it with 'safekit arbiter key --cluster-key FILE --out FILE'",
        error=ArbiterKeyError,
    )
    return decode_key_file(text, source=str(path))


def write_key_file(path: str | os.PathLike[str], arbiter_key: bytes, *, overwrite: bool = False) -> bool:
    """Write `arbiter_key` to `path`, mode 0600 from the moment the file exists.

    Returns False (and writes nothing) when the file already holds this key, so deployment tools
    can be idempotent. A file holding another key is replaced only with `overwrite`.
    """
    path = Path(path)
    data = encode_key_file(arbiter_key)
    if path.exists():
        try:
            current = load_key(path)
        except ArbiterKeyError:
            current = None
        if current is not None and hmac.compare_digest(current, arbiter_key):
            return False
        if not overwrite:
            raise ArbiterKeyError(f"{path}: exists and holds another key; remove it first (or use --force)")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True
