"""What every fuzz target shares: the active profile's settings, the example counter, the CPU-time
bound of one example, and the byte mutations applied to valid inputs.

The profiles themselves ("ci" and "long") are registered by conftest.py; a target takes its
settings from `fuzz_settings()` instead of loading a profile globally, so that the fuzz profile
never changes the settings of the project's other hypothesis tests in the same run.
"""

from __future__ import annotations

import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st

PROFILE = os.environ.get("SAFEKIT_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"SAFEKIT_FUZZ={PROFILE!r}: use 'ci' (the default) or 'long'")

LONG = PROFILE == "long"

EXAMPLES: Counter[str] = Counter()
"""Examples run per target in this session (printed at the end by conftest.py)."""

CPU_BOUND = 2.0
"""Seconds of CPU one example of a decoder may use. Decoders answer in microseconds to
milliseconds; the bound catches a super-linear path (a hang in the making), not slowness. CPU
time, not wall time: other engineers' processes on the same cores do not count against it."""


def fuzz_settings(weight: float = 1.0) -> settings:
    """The active profile, with `weight` times its number of examples (slow targets use < 1)."""
    profile = settings.get_profile(PROFILE)
    return settings(profile, max_examples=max(10, int(profile.max_examples * weight)))


def timeout_seconds() -> int:
    """pytest-timeout (seconds) for one fuzz test: a hang fails the test instead of the run."""
    return 3600 if LONG else 120


def count(target: str) -> None:
    EXAMPLES[target] += 1


@contextmanager
def bounded(what: str, seconds: float = CPU_BOUND) -> Iterator[None]:
    """Fail if the block uses more than `seconds` of this process's CPU time."""
    start = time.process_time()
    yield
    used = time.process_time() - start
    assert used < seconds, f"{what}: {used:.3f} s of CPU for one input (bound {seconds} s)"


def run_decoder(
    what: str, decoder: Callable[[], Any], allowed: type[BaseException] | tuple[type[BaseException], ...]
) -> tuple[Any, BaseException | None]:
    """Run `decoder`: it returns a value, or raises one of the `allowed` errors with a message.

    Any other exception propagates (the fuzz failure hypothesis shrinks and reports).
    """
    try:
        with bounded(what):
            value = decoder()
    except allowed as exc:
        message = str(exc)
        assert message.strip(), f"{what}: {type(exc).__name__} with an empty message"
        event(f"{what}: {type(exc).__name__}")
        return None, exc
    event(f"{what}: accepted")
    return value, None


# --------------------------------------------------------------------------- byte mutations

_BOUNDARY_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 2**31 - 1, 2**31, 2**32 - 1)
_INTERESTING_WIDTHS = (1, 2, 4, 8)


@st.composite
def _mutation(draw: st.DrawFn, size: int) -> Callable[[bytes], bytes]:  # noqa: PLR0911 - one per kind
    """One mutation of a `size`-byte input; applied by calling it."""
    position = draw(st.integers(0, max(0, size - 1)))
    kind = draw(
        st.sampled_from(
            ("flip", "byte", "truncate", "insert", "delete", "field", "duplicate", "extend", "swap")
        )
    )
    if kind == "flip":
        bit = draw(st.integers(0, 7))
        return lambda data: (
            data[:position] + bytes((data[position] ^ (1 << bit),)) + data[position + 1 :] if data else data
        )
    if kind == "byte":
        value = draw(st.sampled_from((0, 1, 0x7F, 0x80, 0xFE, 0xFF)) | st.integers(0, 255))
        return lambda data: data[:position] + bytes((value,)) + data[position + 1 :]
    if kind == "truncate":
        return lambda data: data[:position]
    if kind == "insert":
        extra = draw(st.binary(min_size=1, max_size=16))
        return lambda data: data[:position] + extra + data[position:]
    if kind == "delete":
        length = draw(st.integers(1, 16))
        return lambda data: data[:position] + data[position + length :]
    if kind == "field":
        # A length or count field set to a boundary value: 0, max, off by one, huge.
        width = draw(st.sampled_from(_INTERESTING_WIDTHS))
        value = draw(st.sampled_from(_BOUNDARY_INTS) | st.integers(0, 2 ** (8 * width) - 1))
        value %= 2 ** (8 * width)
        packed = value.to_bytes(width, "big")
        return lambda data: data[:position] + packed + data[position + width :]
    if kind == "duplicate":
        length = draw(st.integers(1, 64))
        return lambda data: (
            data[:position] + data[position : position + length] * 2 + data[position + length :]
        )
    if kind == "extend":
        extra = draw(st.binary(min_size=1, max_size=64))
        return lambda data: data + extra
    other = draw(st.integers(0, max(0, size - 1)))
    return lambda data: _swap(data, position, other)


def _swap(data: bytes, i: int, j: int) -> bytes:
    if i >= len(data) or j >= len(data):
        return data
    buf = bytearray(data)
    buf[i], buf[j] = buf[j], buf[i]
    return bytes(buf)


@st.composite
def mutated(draw: st.DrawFn, original: bytes, max_mutations: int = 4) -> bytes:
    """`original` after 1 to `max_mutations` mutations (that may cancel out: callers check)."""
    data = original
    for _ in range(draw(st.integers(1, max_mutations))):
        data = draw(_mutation(len(data)))(data)
    return data


def u16(value: int) -> bytes:
    return struct.pack(">H", value)
