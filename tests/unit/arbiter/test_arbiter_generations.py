"""Replica generations at the arbiter: the state file, a restart that keeps them, a corrupt file that
stops the start, and what a node sees over 127.0.0.1 (the outdated refusal)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from safekit import cli
from safekit.arbiter import keys, server
from safekit.arbiter.cli import _load_generations
from safekit.arbiter.client import ArbiterClient
from safekit.arbiter.generations import STATE_FILE, Generations, GenerationStateError, GenerationStore
from safekit.arbiter.keys import cluster_id, derive_arbiter_key
from safekit.mirror.states import ReplicaRank

CLUSTER_KEY = b"c" * 32
ARBITER_KEY = derive_arbiter_key(CLUSTER_KEY)
CID = cluster_id(ARBITER_KEY)


def R(generation: int, confirmed: int | None = None) -> ReplicaRank:
    return ReplicaRank(generation if confirmed is None else confirmed, generation)


TIMEOUT = 2.0  # generous: the machine is shared and loaded


class CountingStore(GenerationStore):
    """A real store that counts its writes (and can be made to fail them)."""

    def __init__(self, state_dir: Path, *, fail: bool = False) -> None:
        super().__init__(state_dir)
        self.saves = 0
        self.fail = fail

    def save(self, generations: Generations) -> None:
        self.saves += 1
        if self.fail:
            raise GenerationStateError(f"{self.path}: cannot write the replica generations: No space left")
        super().save(generations)


def run(store: GenerationStore, scenario: Callable[[server.RunningArbiter], Awaitable[None]]) -> None:
    """One arbiter process's life: started on `store` (generations loaded from it), then stopped."""

    async def main() -> None:
        running = await server.start([ARBITER_KEY], "127.0.0.1", 0, grace=0.0, store=store)
        try:
            await scenario(running)
        finally:
            await running.close()

    asyncio.run(main())


def client(running: server.RunningArbiter, node: str) -> ArbiterClient:
    host, port = running.address
    return ArbiterClient(host, port, CLUSTER_KEY, node)


# ------------------------------------------------------------------ the state file


def test_store_round_trip_private_directory_and_file(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path / "state" / "arbiter")
    store.prepare()
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700
    assert store.load() == {}  # a first start: no file yet
    generations = {(CID, "am"): R(6), (CID, "db"): R(2**64 - 1), (b"\x02" * 8, "am"): R(3, 1)}
    store.save(generations)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == generations
    assert GenerationStore(store.state_dir).load() == generations  # another process reads the same
    assert [p.name for p in store.state_dir.iterdir()] == [STATE_FILE]  # no temporary file left
    document = json.loads(store.path.read_text())
    assert document["version"] == 2
    assert document["clusters"][CID.hex()] == {
        "am": {"generation": 6, "confirmed": 6},
        "db": {"generation": 2**64 - 1, "confirmed": 2**64 - 1},
    }


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"format": "safekit-arbiter-generations", "version": 1, "clusters": {"', "not JSON"),
        ("\x00\x00\x00\x00", "not JSON"),
        ('{"format": "other", "version": 1, "clusters": {}}', "not a safekit-arbiter-generations"),
        ('{"format": "safekit-arbiter-generations", "version": 9, "clusters": {}}', "version 9"),
        ('{"format": "safekit-arbiter-generations", "version": 1, "clusters": {"zz": {}}}', "cluster id"),
        (
            '{"format": "safekit-arbiter-generations", "version": 1, "clusters": {"0101010101010101": '
            '{"a/b": 1}}}',
            "module name",
        ),
        (
            '{"format": "safekit-arbiter-generations", "version": 1, "clusters": {"0101010101010101": '
            '{"am": -3}}}',
            "out of range",
        ),
        (
            '{"format": "safekit-arbiter-generations", "version": 1, "clusters": {"0101010101010101": '
            '{"am": "6"}}}',
            "out of range",
        ),
    ],
)
def test_a_corrupt_state_file_is_refused_naming_the_file(tmp_path: Path, content: str, why: str) -> None:
    store = GenerationStore(tmp_path)
    store.path.write_text(content)
    with pytest.raises(GenerationStateError) as error:
        store.load()
    assert str(store.path) in str(error.value) and why in str(error.value)
    assert "--reset-generations" in str(error.value)


def test_an_unreadable_state_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    store.path.mkdir()  # a directory where the file should be: reading it fails
    with pytest.raises(GenerationStateError, match="cannot be read") as error:
        store.load()
    assert str(store.path) in str(error.value)


def test_serve_refuses_to_start_on_a_corrupt_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "arbiter.key"
    keys.write_key_file(key_file, ARBITER_KEY)
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text("garbage")
    argv = ["arbiter", "serve", "--listen", "127.0.0.1:19998", "--key-file", str(key_file)]
    assert cli.main([*argv, "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert str(state / STATE_FILE) in err and "is corrupt" in err and "refuses to start" in err


def test_reset_generations_forgets_them_and_replaces_a_corrupt_file(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    store.save({(CID, "am"): R(6)})
    _store, generations, note = _load_generations(tmp_path, reset=False)
    assert generations == {(CID, "am"): R(6)} and note is None
    _store, generations, note = _load_generations(tmp_path, reset=True)
    assert generations == {} and note is not None and "1 recorded replica generation" in note
    assert store.load() == {}
    store.path.write_text("garbage")
    _store, generations, note = _load_generations(tmp_path, reset=True)
    assert generations == {} and note is not None and "unreadable state file replaced" in note
    assert store.load() == {}  # the next start without the flag works again


# ------------------------------------------------------------------ the service


def test_outdated_node_is_refused_also_after_an_arbiter_restart(tmp_path: Path) -> None:
    """node1 served alone at generation 6; node2 (generation 5) is refused while node1 holds the
    lease, after it expired, and by a restarted arbiter; the file was written once."""
    store = CountingStore(tmp_path / "state")
    store.prepare()

    async def first_life(running: server.RunningArbiter) -> None:
        node1, node2 = client(running, "node1"), client(running, "node2")
        try:
            a = await node1.request("am", 0.5, TIMEOUT, generation=6)
            assert a is not None and a.granted and a.generation == 6 and not a.outdated
            for _ in range(3):  # renewals at the same generation write nothing
                renewed = await node1.request("am", 0.5, TIMEOUT, generation=6)
                assert renewed is not None and renewed.granted
            b = await node2.request("am", 0.5, TIMEOUT, generation=5)
            assert b is not None and not b.granted and b.outdated and b.generation == 6
            assert b.holder == "node1"
            assert b.detail == "outdated: this copy is at generation 5, the arbiter knows generation 6"
            await asyncio.sleep(0.6)  # node1's lease has expired
            c = await node2.request("am", 0.5, TIMEOUT, generation=5)
            assert c is not None and c.outdated and c.holder is None
            status = await node2.status("am", TIMEOUT)
            assert status is not None and status.generation == 6
            assert [(e.module, e.holder, e.generation) for e in status.entries] == [("am", "", 6)]
            assert await node1.release("am", TIMEOUT)
        finally:
            node1.close()
            node2.close()

    run(store, first_life)
    assert store.saves == 1
    assert store.load() == {(CID, "am"): R(6)}

    async def second_life(running: server.RunningArbiter) -> None:
        node2 = client(running, "node2")
        try:
            d = await node2.request("am", 0.5, TIMEOUT, generation=5)
            assert d is not None and d.outdated and d.generation == 6
            # the same node after its resynchronisation from node1
            e = await node2.request("am", 0.5, TIMEOUT, generation=6)
            assert e is not None and e.granted and e.generation == 6
        finally:
            node2.close()

    run(store, second_life)
    assert store.saves == 1  # generation 6 again: nothing to write


def test_a_grant_whose_generation_cannot_be_persisted_is_withdrawn_and_not_answered(tmp_path: Path) -> None:
    store = CountingStore(tmp_path, fail=True)

    async def scenario(running: server.RunningArbiter) -> None:
        node1, node2 = client(running, "node1"), client(running, "node2")
        try:
            # no answer (neither to the retransmission): node1 holds no lease
            assert await node1.request("am", 5.0, 0.4, generation=3) is None
            assert store.saves == 2
            assert running.arbiter.table.leases(CID, now=0.0) == []
            assert running.arbiter.table.generation(CID, "am") == 0  # never granted, never known
            store.fail = False
            c = await node2.request("am", 5.0, TIMEOUT, generation=3)
            assert c is not None and c.granted and c.generation == 3  # written this time
        finally:
            node1.close()
            node2.close()

    run(store, scenario)
    assert store.load() == {(CID, "am"): R(3)}


def test_status_and_release_answers_carry_the_generation(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    store.save({(CID, "old"): R(4)})

    async def scenario(running: server.RunningArbiter) -> None:
        node1 = client(running, "node1")
        try:
            a = await node1.request("am", 3.0, TIMEOUT, generation=2)
            assert a is not None and a.granted
            everything = await node1.status(None, TIMEOUT)
            assert everything is not None and everything.generation == 0
            assert [(e.module, e.holder, e.generation) for e in everything.entries] == [
                ("am", "node1", 2),
                ("old", "", 4),
            ]
            assert await node1.release("am", TIMEOUT)
            legacy = await node1.request("old", 3.0, TIMEOUT)  # a caller that sends no generation
            assert legacy is not None and legacy.outdated and legacy.generation == 4
        finally:
            node1.close()

    run(store, scenario)


def test_cli_request_and_status_show_generations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`safekit arbiter request --generation N` and `status`, against a service in another thread."""
    import threading  # noqa: PLC0415 - this test only

    key_file = tmp_path / "arbiter.key"
    keys.write_key_file(key_file, ARBITER_KEY)
    ready = threading.Event()
    stop: asyncio.Event | None = None
    address: list[str] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        running = await server.start([ARBITER_KEY], "127.0.0.1", 0, grace=0.0)
        host, port = running.address
        address.append(f"{host}:{port}")
        ready.set()
        await stop.wait()
        await running.close()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        base = ["--address", address[0], "--key-file", str(key_file)]
        ask = ["arbiter", "request", *base, "--module", "am", "--duration", "5"]
        assert cli.main([*ask, "--node", "node1", "--generation", "6"]) == 0
        assert cli.main([*ask, "--node", "node2", "--generation", "5", "--json"]) == 3
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "am: granted"
        refused = json.loads(out[1])
        assert refused["outdated"] is True and refused["generation"] == 6
        assert cli.main(["arbiter", "status", *base]) == 0
        text = capsys.readouterr().out
        assert "am: held by node1 for" in text and "highest copy generation 6" in text
        assert cli.main(["arbiter", "status", *base, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["leases"][0]["generation"] == 6
        assert cli.main([*ask, "--node", "node2", "--generation", "-1"]) == 1
        # the same number holding fewer acknowledged writes is outdated too (ADR 0046)
        assert cli.main([*ask, "--node", "node2", "--generation", "6", "--confirmed", "3"]) == 3
        assert "acknowledged writes up to generation 3" in capsys.readouterr().out
        assert cli.main([*ask, "--node", "node2", "--generation", "6", "--confirmed", "7"]) == 1
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = GenerationStore(tmp_path / "a" / "b")
        store.prepare()
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700
    store.save({(CID, "am"): R(1)})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_a_version_1_file_reads_each_number_as_confirmed_and_the_next_write_is_version_2(
    tmp_path: Path,
) -> None:
    store = GenerationStore(tmp_path)
    store.prepare()
    store.path.write_text(
        json.dumps(
            {"format": "safekit-arbiter-generations", "version": 1, "clusters": {CID.hex(): {"am": 6}}}
        )
    )
    assert store.load() == {(CID, "am"): R(6)}
    store.save({(CID, "am"): R(9, 6)})
    document = json.loads(store.path.read_text())
    assert document["version"] == 2
    assert document["clusters"][CID.hex()] == {"am": {"generation": 9, "confirmed": 6}}
    assert store.load() == {(CID, "am"): (6, 9)}


@pytest.mark.parametrize(
    "entry", [{"generation": 5, "confirmed": 6}, {"generation": 5}, 5, {"generation": 5, "confirmed": "5"}]
)
def test_a_version_2_entry_that_is_not_a_rank_is_refused(tmp_path: Path, entry: object) -> None:
    store = GenerationStore(tmp_path)
    store.prepare()
    store.path.write_text(
        json.dumps(
            {"format": "safekit-arbiter-generations", "version": 2, "clusters": {CID.hex(): {"am": entry}}}
        )
    )
    with pytest.raises(GenerationStateError, match="module am"):
        store.load()
