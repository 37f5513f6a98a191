"""Fuzz the arbiter's datagram decoders (safekit.arbiter.wire): the arbiter reads requests from
any host that can reach its UDP port, and the nodes read its answers.

Contract: `decode_request` and `decode_answer` return a value or raise an `ArbiterWireError`
subclass with a message, nothing else; valid datagrams round-trip; a datagram changed without
the key is never accepted; a changed datagram re-signed with the key (a buggy or newer peer) is
parsed or refused; an unknown cluster id is refused before any key is used.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from fuzz_support import count, fuzz_settings, mutated, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.arbiter import wire
from safekit.arbiter.keys import cluster_id
from safekit.arbiter.leases import Reason
from safekit.arbiter.wire import (
    MAX_DATAGRAM,
    TAG_SIZE,
    Answer,
    ArbiterWireError,
    Kind,
    LeaseEntry,
    Request,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(7, 39))
CLUSTER = cluster_id(KEY)
U32 = st.integers(0, 2**32 - 1)

pytestmark = pytest.mark.timeout(timeout_seconds())

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True) | st.sampled_from(
    ("node1", "web", "x" * 128)
)


def _key_for(cluster: bytes) -> bytes | None:
    return KEY if cluster == CLUSTER else None


@st.composite
def requests(draw: st.DrawFn) -> Request:
    kind = draw(st.sampled_from(Kind))
    return Request(
        kind=kind,
        cluster=CLUSTER,
        node=draw(names),
        module=draw(st.just("") | names) if kind is Kind.STATUS else draw(names),
        nonce=draw(st.binary(min_size=16, max_size=16)),
        boot_id=draw(st.binary(min_size=16, max_size=16)),
        sequence=draw(st.integers(0, 2**64 - 1)),
        duration_ms=draw(st.integers(1, 2**32 - 1)) if kind is Kind.REQUEST else 0,
    )


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    kind = draw(st.sampled_from(Kind))
    status = kind is Kind.STATUS
    entries = draw(st.lists(st.builds(LeaseEntry, names, names, U32), max_size=5)) if status else []
    return Answer(
        kind=kind,
        cluster=CLUSTER,
        nonce=draw(st.binary(min_size=16, max_size=16)),
        arbiter_boot_id=draw(st.binary(min_size=16, max_size=16)),
        reason=draw(st.sampled_from(Reason)),
        remaining_ms=draw(U32),
        holder=draw(st.just("") | names),
        entries=tuple(entries),
        truncated=draw(st.booleans()) if status else False,
    )


def _encoded(draw: st.DrawFn) -> tuple[str, bytes]:
    """('request' or 'answer', a valid datagram) - redrawn when it does not fit one datagram."""
    while True:
        if draw(st.booleans()):
            request = draw(requests())
            try:
                return "request", wire.encode_request(request, KEY)
            except ValueError:
                continue
        answer = draw(answers())
        try:
            return "answer", wire.encode_answer(answer, KEY)
        except ValueError:
            continue


def _decode(kind: str, data: bytes) -> tuple[Request | Answer | None, BaseException | None]:
    if kind == "request":
        value, error = run_decoder(
            "arbiter request", lambda: wire.decode_request(data, _key_for), ArbiterWireError
        )
        if value is not None:
            assert wire.decode_request(wire.encode_request(value, KEY), _key_for) == value
    else:
        value, error = run_decoder("arbiter answer", lambda: wire.decode_answer(data, KEY), ArbiterWireError)
        if value is not None:
            assert wire.decode_answer(wire.encode_answer(value, KEY), KEY) == value
    return value, error


def _resign(data: bytes) -> bytes:
    body = bytearray(data[:-TAG_SIZE] if len(data) > TAG_SIZE else data)
    if len(body) >= 8 and len(body) + TAG_SIZE <= 0xFFFF:
        body[6:8] = (len(body) + TAG_SIZE).to_bytes(2, "big")
    return bytes(body) + hmac.new(KEY, bytes(body), hashlib.sha256).digest()


@given(requests())
@fuzz_settings()
def test_requests_round_trip(request: Request) -> None:
    count("arbiter: request round trip")
    try:
        data = wire.encode_request(request, KEY)
    except ValueError:
        return  # too long for one datagram: refused when encoding
    assert wire.decode_request(data, _key_for) == request
    with pytest.raises(wire.UnknownCluster):
        wire.decode_request(data, lambda cluster: None)
    with pytest.raises(wire.BadSignature):
        wire.decode_request(data, lambda cluster: OTHER_KEY)


@given(answers())
@fuzz_settings()
def test_answers_round_trip(answer: Answer) -> None:
    count("arbiter: answer round trip")
    try:
        data = wire.encode_answer(answer, KEY)
    except ValueError:
        return
    assert wire.decode_answer(data, KEY) == answer
    with pytest.raises(wire.BadSignature):
        wire.decode_answer(data, OTHER_KEY)


@given(st.data())
@fuzz_settings()
def test_a_changed_datagram_is_never_accepted_without_the_key(data: st.DataObject) -> None:
    count("arbiter: mutated, unsigned")
    kind, original = _encoded(data.draw)
    changed = data.draw(mutated(original))
    value, error = _decode(kind, changed)
    if changed != original:
        assert value is None, f"accepted a datagram changed without the key: {changed!r}"
        assert isinstance(error, ArbiterWireError)


@given(st.data())
@fuzz_settings()
def test_a_changed_and_re_signed_datagram_is_parsed_or_refused(data: st.DataObject) -> None:
    count("arbiter: mutated, re-signed")
    kind, original = _encoded(data.draw)
    if data.draw(st.booleans(), label="keep the fixed header"):
        changed = _resign(original[:16] + data.draw(mutated(original[16:])))
    else:
        changed = _resign(data.draw(mutated(original)))
    _, error = _decode(kind, changed)
    if len(changed) > MAX_DATAGRAM:
        assert isinstance(error, wire.Oversized)


@given(st.sampled_from(("request", "answer")), st.binary(max_size=MAX_DATAGRAM + 40))
@fuzz_settings()
def test_raw_bytes_are_refused(kind: str, data: bytes) -> None:
    count("arbiter: raw bytes")
    value, error = _decode(kind, data)
    assert value is None and isinstance(error, ArbiterWireError)
    _decode(kind, _resign(wire.MAGIC + bytes((wire.VERSION,)) + data[5:]))
