# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""The cluster key and the arbiter key files, with Python's standard library only.

The controller generates a cluster's key once and derives the key its arbiter holds; neither step
needs the engine installed there. This is the collection's single definition of the two key file
formats (the engine's are src/safekit/membership/clusterkey.py and src/safekit/arbiter/keys.py;
tests/unit/ansible/test_ansible_clusterkey.py checks that each side reads what the other writes,
and that the derivation and fingerprints agree)::

    safekit-cluster-key-v1:<standard base64 of exactly 32 bytes>
    safekit-arbiter-key-v1:<standard base64 of exactly 32 bytes>

Blank lines and lines starting with ``#`` are ignored. No function here ever puts key material in
an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat

KEY_SIZE = 32
CLUSTER_KEY_PREFIX = "safekit-cluster-key-v1:"
ARBITER_KEY_PREFIX = "safekit-arbiter-key-v1:"
MAX_KEY_FILE_BYTES = 4096
_FINGERPRINT_DOMAIN = b"safekit cluster key fingerprint v1\x00"
_ARBITER_DERIVATION_LABEL = b"safekit arbiter key v1"
_ARBITER_CLUSTER_ID_DOMAIN = b"safekit arbiter cluster id v1\x00"
_ARBITER_CLUSTER_ID_SIZE = 8


class KeyFileError(ValueError):
    """A key file that is not one, or is unsafe. The message names the file, never the key."""


def generate_key() -> bytes:
    """A new random cluster key: 32 bytes from the OS CSPRNG."""
    return secrets.token_bytes(KEY_SIZE)


def encode(key: bytes, prefix: str = CLUSTER_KEY_PREFIX) -> str:
    """The key file text of `key` (one line, newline-terminated)."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise KeyFileError(f"a key is {KEY_SIZE} bytes")
    return prefix + base64.b64encode(key).decode("ascii") + "\n"


def decode(text: str, prefix: str = CLUSTER_KEY_PREFIX, source: str = "cluster key") -> bytes:
    """The 32 bytes of key file text `text`; KeyFileError (naming `source`) when it is not one."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) != 1:
        raise KeyFileError(f"{source}: expected exactly one key line '{prefix}<base64>', found {len(lines)}")
    line = lines[0]
    if not line.startswith(prefix):
        raise KeyFileError(f"{source}: the key line must start with '{prefix}'")
    try:
        key = base64.b64decode(line[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{source}: the key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise KeyFileError(f"{source}: the key must decode to {KEY_SIZE} bytes, it decodes to {len(key)}")
    return key


def derive_arbiter_key(cluster_key: bytes) -> bytes:
    """The arbiter key of a cluster: HMAC-SHA256(cluster key, label), one-way."""
    return hmac.new(cluster_key, _ARBITER_DERIVATION_LABEL, hashlib.sha256).digest()


def arbiter_cluster_id(arbiter_key: bytes) -> str:
    """The public id (hex) that names the cluster to a multi-cluster arbiter."""
    digest = hashlib.sha256(_ARBITER_CLUSTER_ID_DOMAIN + arbiter_key).hexdigest()
    return digest[: 2 * _ARBITER_CLUSTER_ID_SIZE]


def fingerprint(key: bytes) -> str:
    """A short, log-safe identifier of a cluster key (the engine's `fingerprint`)."""
    return "sha256:" + hashlib.sha256(_FINGERPRINT_DOMAIN + key).hexdigest()[:16]


def read_key_file(path: str, prefix: str = CLUSTER_KEY_PREFIX, what: str = "cluster key") -> bytes:
    """The key in the file at `path`, refusing a file that others could read or replace.

    Refused (KeyFileError): anything but a regular file, any group/other permission bit, a file
    owned by another user than us or root, a file too big to be a key.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path}: the {what} must be a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"{path}: {what} file is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); fix it with: chmod 600 {path}"
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise KeyFileError(f"{path}: {what} file is owned by uid {info.st_uid}, not by this user or root")
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: {info.st_size} bytes is too big for a {what} file")
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: the {what} file is not ASCII text") from None
    return decode(text, prefix, source=path)


def create_key_file(path: str, key: bytes, prefix: str = CLUSTER_KEY_PREFIX) -> None:
    """Write `key` to a new file at `path`, mode 0600 from the moment it exists; never overwrites.

    Its directory is created (mode 0700) when missing.
    """
    data = encode(key, prefix).encode("ascii")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
