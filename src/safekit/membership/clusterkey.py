"""The cluster key: the shared secret that authenticates inter-node traffic (ARCHITECTURE rule 5).

This module owns the key's life outside the wire: generating one, its on-disk text format, loading
it safely (refusing a file that other local users could read or replace), and a short fingerprint
that may appear in logs so operators can check two nodes hold the same key without the key ever
being printed.

Key file format, one line of ASCII::

    safekit-cluster-key-v1:<standard base64 of exactly 32 bytes>

Blank lines and lines starting with ``#`` are ignored, so an operator may annotate the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from pathlib import Path

KEY_SIZE = 32
"""Bytes of secret: HMAC-SHA256's block-size-independent full strength is reached at 32 bytes."""

KEY_FILE_PREFIX = "safekit-cluster-key-v1:"
MAX_KEY_FILE_BYTES = 4096
"""A key file is one short line; a bigger file is certainly the wrong file, so we do not read it."""

_FINGERPRINT_DOMAIN = b"safekit cluster key fingerprint v1\x00"


class ClusterKeyError(Exception):
    """A key file is missing, unsafe or unreadable. The message names the file and the fix.

    Messages never contain key material, not even a fragment of a malformed line.
    """


def generate_key() -> bytes:
    """Return a new random cluster key (32 bytes from the OS CSPRNG)."""
    return secrets.token_bytes(KEY_SIZE)


def check_key(key: bytes) -> None:
    """Raise ValueError unless `key` has the shape of a cluster key (32 bytes)."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        # Say the length only: the content is secret.
        length = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ValueError(f"a cluster key is {KEY_SIZE} bytes, got {length}")


def encode_key_file(key: bytes) -> str:
    """Return the key file text for `key` (one line, newline-terminated)."""
    check_key(key)
    return KEY_FILE_PREFIX + base64.b64encode(key).decode("ascii") + "\n"


def decode_key_file(text: str, *, source: str = "cluster key") -> bytes:
    """Parse key file text; `source` (usually the path) is named in errors."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) != 1:
        raise ClusterKeyError(
            f"{source}: expected exactly one key line '{KEY_FILE_PREFIX}<base64>', found {len(lines)}; "
            "generate a new key with 'safekit cluster genkey'"
        )
    line = lines[0]
    if not line.startswith(KEY_FILE_PREFIX):
        if line.startswith("safekit-cluster-key-v"):
            version = line.split(":", 1)[0]
            raise ClusterKeyError(
                f"{source}: key format '{version}' is not supported by this version of safekit "
                f"(it reads '{KEY_FILE_PREFIX.rstrip(':')}'); upgrade safekit on this node"
            )
        raise ClusterKeyError(f"{source}: the key line must start with '{KEY_FILE_PREFIX}'")
    try:
        key = base64.b64decode(line[len(KEY_FILE_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ClusterKeyError(f"{source}: the key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ClusterKeyError(f"{source}: the key must decode to {KEY_SIZE} bytes, it decodes to {len(key)}")
    return key


def read_secret_text(
    path: str | os.PathLike[str], *, what: str, missing: str, error: type[Exception] = ClusterKeyError
) -> str:
    """The ASCII text of a small secret file (`what`, e.g. "cluster key"), read safely.

    Refused, with `error`: anything but a regular file; a file with any group/other permission bit
    (others could read the key, or replace it with one they know); a file owned by another user
    than us or root (its owner could chmod it open at any time); a file too big to be a key.
    `missing` is the hint given when the file does not exist.
    """
    path = Path(path)
    try:
        # Check the permissions of the file we actually opened (fstat), not of whatever the path
        # pointed to a moment before: no window between check and read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found; {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot open {what} file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: the {what} must be a regular file")
        if info.st_mode & 0o077:
            raise error(
                f"{path}: {what} file is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); fix it with: chmod 600 {path}"
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise error(
                f"{path}: {what} file is owned by uid {info.st_uid}, not by this user or root; "
                f"fix it with: chown {os.geteuid()} {path}"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise error(f"{path}: {info.st_size} bytes is too big for a {what} file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise error(f"{path}: the {what} file is not ASCII text") from None


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read and validate the key file at `path` (the safety rules of `read_secret_text`)."""
    text = read_secret_text(
        path,
        what="cluster key",
        missing="create it with 'safekit cluster genkey' and copy the same file to every node",
    )
    return decode_key_file(text, source=str(path))


def save_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Write `key` to a new file at `path`, mode 0600 from the moment it exists.

    Refuses to overwrite: replacing the key of a running cluster cuts every node off from the
    others, so it must be a deliberate step (remove the old file first).
    """
    data = encode_key_file(key).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fingerprint(key: bytes) -> str:
    """A short, log-safe identifier of `key`: equal keys give equal fingerprints.

    64 bits of a domain-separated SHA-256: enough to tell keys apart, useless to recover one.
    """
    check_key(key)
    return "sha256:" + hashlib.sha256(_FINGERPRINT_DOMAIN + key).hexdigest()[:16]
