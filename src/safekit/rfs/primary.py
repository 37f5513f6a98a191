"""The primary's replication process: the FUSE front, the stream to the secondary, the journal.

Link states (`state`):
  degraded   no secondary follows: operations go to the journal, fsync is local only
  resync     connected, bringing the secondary's copy up to date while applications write
  in_sync    every operation is streamed; fsync / O_SYNC writes wait for the secondary's ACK
  degrading  the link was lost while in sync: barriers wait until safekitd confirms that the
             secondary can no longer take over with its copy (new generation announced and seen,
             or the peer lost); then `degraded`

Everything runs in one trio thread with the FUSE handlers (see fusefs.py for why that matters).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import json
import logging
import os
import socket
import stat
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from safekit.host import mounts, persist
from safekit.membership.clusterkey import load_key
from safekit.rfs import channel, control, ops, spec, tree
from safekit.rfs.fusefs import ReplicatedFS
from safekit.rfs.journal import ZONE, Entry, Journal, Mark, apply_marks, marks_of, plan_order
from safekit.rfs.logsetup import setup
from safekit.rfs.wire import (
    ATTR_ATIME,
    ATTR_GID,
    ATTR_MODE,
    ATTR_MTIME,
    ATTR_UID,
    FLAG_ACK,
    FLAG_LAST,
    Frame,
    FrameDecoder,
    FrameType,
    SequenceCheck,
    WireError,
    Writer,
    derive_hello_key,
    derive_session_key,
    encode_frame,
    encode_frame_parts,
    new_nonce,
)

log = logging.getLogger("safekit.rfs.primary")
PING_INTERVAL = 1.0
YIELD_EVERY = 16  # zones (1 MiB) between two chances for FUSE handlers to run during a resync
SUMS_BATCH = 256
STOP_FLUSH_TIMEOUT = 2.0
"""At stop, how long the secondary may take to apply the last (unsynced) operations: the process
must be gone within seconds of a role change."""


class State(enum.StrEnum):
    DEGRADED = "degraded"
    RESYNC = "resync"
    IN_SYNC = "in_sync"
    DEGRADING = "degrading"


class Lost(Exception):
    """The replication link is lost (the message says why)."""


class Replicator:
    def __init__(self, rfs: spec.RfsSpec, key: bytes, journal: Journal, dir_fds: list[int]) -> None:
        self.spec = rfs
        self.key = key
        self.journal = journal
        self.dir_fds = dir_fds
        self.exclusions = [d.exclusions() for d in rfs.dirs]
        # Until safekitd confirms that the secondary knows its copy does not follow this one (or is
        # gone), nothing is acknowledged without it and no session starts.
        self.state = State.DEGRADING
        self.generation = int(rfs.extra.get("generation", 0))
        self.connected = False
        self.seq = journal.seq
        self.resync_mode = ""
        self.quick_check = False
        """A checksum pass may skip a file whose size and modification time match: only when the
        secondary's copy was in sync (its HELLO). After an interrupted resync a file can have the
        primary's size and time but blocks that never arrived (found by the native tests)."""
        self.progress = [0, 0]
        self.lost_reason = ""
        self.send_key = b""
        self.out: list[bytes | memoryview] = []
        self.out_ready = trio.Event()
        self.inflight: collections.deque[tuple[int, int, tuple[Mark, ...], int]] = collections.deque()
        self.unapplied_bytes = 0
        self.acked_received = 0
        self.acked_applied = 0
        self.last_heard = 0.0
        self.ack_changed = trio.Event()
        self.degrade_ok = trio.Event()
        self.j0: Journal | None = None
        self.pending: list[tuple[int, bytes]] = []
        self.manifests_asked = 0
        self.manifests_answered = 0
        self.manifest_chunks: list[dict[str, Any]] = []
        self.manifest_answers: dict[int, list[dict[str, Any]]] = {}
        self.manifest_arrived = trio.Event()
        self.fullsync_requested = False
        self.stopping = False
        self.held_logged = 0.0
        self.fenced = False
        self.session_scope: trio.CancelScope | None = None
        self.stats: dict[str, Any] = {"resyncs": 0}

    # ------------------------------------------------------------------ the FUSE side (Sink)
    def send(self, dir_index: int, op: ops.Operation) -> None:
        if not self.connected:
            apply_marks(self.journal, dir_index, marks_of(op))
            return
        size = self._enqueue_op(dir_index, op)
        self.inflight.append((self.seq, dir_index, marks_of(op), size))
        self.unapplied_bytes += size

    def send_object(self, dir_index: int, path: bytes) -> None:
        if not self.connected:
            self.journal.replaced(dir_index, path)
            return
        self._send_object_now(dir_index, path)

    def renamed(self, dir_index: int, path: bytes) -> None:
        if self.state is State.RESYNC:
            self.pending.append((dir_index, path))

    async def throttle(self) -> None:
        if not self.connected or self.unapplied_bytes <= self.spec.window_bytes:
            return
        deadline = trio.current_time() + self.spec.sendtimeout
        while self.connected and self.unapplied_bytes > self.spec.window_bytes:
            event = self.ack_changed
            with trio.move_on_at(deadline):
                await event.wait()
                continue
            self.lose(f"the secondary applied nothing for {self.spec.sendtimeout:g} s (sendtimeout)")
            return

    async def barrier(self, dir_index: int, path: bytes, datasync: bool) -> None:
        self._check_fenced()
        if self.state is State.IN_SYNC:
            seq = self._enqueue_op(dir_index, ops.Fsync(path, datasync), FLAG_ACK)
            self.inflight.append((seq, dir_index, (), 0))
            await self._wait_received(seq)
            # Lost before the ACK: wait until the loss is processed, never return in between.
            while self.state is State.IN_SYNC and self.acked_received < seq:
                event = self.ack_changed
                await event.wait()
            if self.acked_received >= seq:
                return
        if self.state is State.DEGRADING:
            await self._wait_degraded()
        self._check_fenced()

    async def _wait_received(self, seq: int) -> None:
        deadline = trio.current_time() + self.spec.sendtimeout
        while self.connected and self.acked_received < seq:
            event = self.ack_changed
            with trio.move_on_at(deadline):
                await event.wait()
                continue
            self.lose(
                f"no acknowledgement from the secondary within {self.spec.sendtimeout:g} s (sendtimeout)"
            )
            return

    async def _wait_degraded(self) -> None:
        while self.state is State.DEGRADING and not self.fenced:
            with trio.move_on_after(5.0):
                await self.degrade_ok.wait()
            now = trio.current_time()
            if self.state is State.DEGRADING and now - self.held_logged >= 4.5:
                self.held_logged = now
                log.warning(
                    "writes wait for fsync: safekitd has not yet confirmed that the secondary knows its "
                    "copy is stale (it must say so, or be lost, before this node acknowledges alone)"
                )

    # ------------------------------------------------------------------ frames out
    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _enqueue_op(self, dir_index: int, op: ops.Operation, flags: int = 0) -> int:
        seq = self._next_seq()
        if isinstance(op, ops.Write):
            prefix = Writer().path(op.path).u64(op.offset).bytes()
            parts = encode_frame_parts(self.send_key, op.type, seq, (prefix, op.data), flags, dir_index)
        else:
            payload = op.encode()
            parts = encode_frame_parts(
                self.send_key, op.type, seq, (payload,), flags | ops.op_flags(op), dir_index
            )
        self.out.extend(parts)
        self.out_ready.set()
        return seq

    def _enqueue_ctrl(self, ftype: FrameType, obj: dict[str, Any], flags: int = 0, dir_index: int = 0) -> int:
        seq = self._next_seq()
        self.out.append(
            encode_frame(self.send_key, Frame(ftype, seq, ops.encode_json(obj), flags, dir_index))
        )
        self.out_ready.set()
        self.inflight.append((seq, dir_index, (), 0))
        return seq

    # ------------------------------------------------------------------ the link
    def lose(self, reason: str) -> None:
        if self.session_scope is not None and self.connected:
            self.lost_reason = reason
            self.session_scope.cancel()

    async def connector(self) -> None:
        delay = self.spec.connect_interval
        while True:
            if self.state is State.DEGRADING:
                await self._wait_degraded()
            reason = await self._session()
            if reason:
                log.warning("replication link: %s", reason)
            await trio.sleep(delay)

    async def _session(self) -> str:
        self.lost_reason = ""
        try:
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            await sock.bind((self.spec.local_addr, 0))
            with trio.fail_after(min(self.spec.sendtimeout, 10.0)):
                await sock.connect((self.spec.peer_addr, self.spec.port))
        except (OSError, trio.TooSlowError) as exc:
            sock.close()
            return (
                "" if isinstance(exc, ConnectionRefusedError) else f"cannot connect to the secondary: {exc}"
            )
        stream = trio.SocketStream(sock)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            hello = await self._handshake(stream)
            mode = self._choose_mode(hello)
            self.quick_check = bool(hello.get("in_sync"))
            with trio.CancelScope() as scope:
                self.session_scope = scope
                self.connected = True
                self.last_heard = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sender, stream)
                    nursery.start_soon(self._receiver, stream)
                    nursery.start_soon(self._pinger)
                    nursery.start_soon(self._progress_reporter)
                    await self._resync(mode)
                    await trio.sleep_forever()
        except BaseException as exc:
            self.lost_reason = link_failure(exc)
        finally:
            was_in_sync = self.state is State.IN_SYNC and not self.stopping
            self.session_scope = None
            await self._disconnected(was_in_sync)
            with trio.CancelScope(shield=True):
                await stream.aclose()
        return self.lost_reason or "connection closed"

    async def _handshake(self, stream: trio.SocketStream) -> dict[str, Any]:
        hello_key = derive_hello_key(self.key, self.spec.module)
        nonce = new_nonce()
        hello = {
            "module": self.spec.module,
            "node": self.spec.node,
            "nonce": nonce.hex(),
            "epoch": self.journal.epoch,
            "first_seq": self.seq + 1,
            "dirs": len(self.spec.dirs),
            "async": self.spec.async_mode,
        }
        await stream.send_all(encode_frame(hello_key, Frame(FrameType.HELLO, 0, ops.encode_json(hello))))
        decoder = FrameDecoder(hello_key)
        with trio.fail_after(self.spec.sendtimeout):
            while (frame := decoder.next_frame()) is None:
                data = await stream.receive_some(65536)
                if not data:
                    raise Lost("the secondary closed the connection during the handshake")
                decoder.feed(data)
        if frame.type is not FrameType.HELLO_OK:
            raise WireError(f"expected HELLO_OK, got {frame.type.name}")
        reply = ops.decode_json(frame.payload)
        if reply.get("node") != self.spec.peer:
            raise Lost(f"the replication port answers as {reply.get('node')!r}, not {self.spec.peer!r}")
        s_nonce = bytes.fromhex(str(reply["nonce"]))
        self.send_key = derive_session_key(self.key, self.spec.module, nonce, s_nonce)
        self.decoder = FrameDecoder(self.send_key)
        self.decoder.feed(b"")
        self.check = SequenceCheck(1)
        self.acked_received = self.acked_applied = self.seq
        return reply

    def _choose_mode(self, hello: dict[str, Any]) -> str:
        if self.fullsync_requested or hello.get("fullsync"):
            return "full"
        if hello.get("epoch") == self.journal.epoch and self.journal.trusted and hello.get("trusted"):
            return "journal"
        return "checksum"

    async def _disconnected(self, was_in_sync: bool) -> None:
        self.connected = False
        self.state = State.DEGRADING if was_in_sync else State.DEGRADED
        if was_in_sync:
            self.degrade_ok = trio.Event()
        self.out.clear()
        for _seq, dir_index, marks, _size in self.inflight:
            apply_marks(self.journal, dir_index, marks)
        self.inflight.clear()
        self.unapplied_bytes = 0
        if self.j0 is not None:  # a resync did not finish: what it was to send is still to send
            if self.resync_mode == "journal":
                self.journal.merge(self.j0)
            else:
                self.journal.trusted = False
            self.j0 = None
        for dir_index, path in self.pending:
            self.journal.replaced(dir_index, path)
        self.pending.clear()
        self._wake_acks()
        reason = self.lost_reason or "connection closed"
        if was_in_sync:
            log.warning(
                "replication lost while in sync (%s): the secondary's copy is stale from now on", reason
            )
            spec.emit(channel.Degraded(reason))
            await self._wait_degraded()
        else:
            spec.emit(channel.Disconnected(reason))

    def fence(self) -> None:
        """safekitd stopped serving without the secondary (the witness rule): fsync calls held for
        the degrade handshake, and any later one, fail with EIO - never acknowledged alone - so
        the application is not stuck in them while its stop script runs."""
        if not self.fenced:
            self.fenced = True
            log.warning(
                "fenced: this node stopped serving without the secondary; held and new fsync calls "
                "fail with EIO (nothing is acknowledged alone)"
            )
        self.degrade_ok.set()

    def _check_fenced(self) -> None:
        if self.fenced:
            raise OSError(errno.EIO, "replication fenced: not acknowledged (this node stopped serving)")

    def confirm_degraded(self) -> None:
        if self.state is State.DEGRADING:
            self.state = State.DEGRADED
            log.info("safekitd confirmed: the secondary cannot take over with its stale copy; fsync is local")
        self.degrade_ok.set()

    def _wake_acks(self) -> None:
        self.ack_changed.set()
        self.ack_changed = trio.Event()

    async def _sender(self, stream: trio.SocketStream) -> None:
        while True:
            if not self.out:
                await self.out_ready.wait()
                self.out_ready = trio.Event()
                continue
            batch, self.out = self.out, []
            await stream.send_all(b"".join(batch))

    async def _receiver(self, stream: trio.SocketStream) -> None:
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                raise Lost("the secondary closed the connection")
            self.decoder.feed(data)
            for frame in self.decoder.frames():
                self.check.check(frame)
                self.last_heard = trio.current_time()
                self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        match frame.type:
            case FrameType.ACK:
                received, applied, _durable = ops.decode_ack(frame.payload)
                if received > self.seq or applied > received:
                    raise WireError(f"ACK for {received}/{applied} beyond the last frame sent ({self.seq})")
                self.acked_received = max(self.acked_received, received)
                self.acked_applied = max(self.acked_applied, applied)
                while self.inflight and self.inflight[0][0] <= self.acked_applied:
                    self.unapplied_bytes -= self.inflight.popleft()[3]
                self._wake_acks()
            case FrameType.ERROR:  # the secondary leaves sync and closes
                info = ops.decode_json(frame.payload)
                raise Lost(f"the secondary failed: {info.get('reason', 'unknown error')}")
            case FrameType.MANIFEST:
                if self.manifests_answered >= self.manifests_asked:
                    raise WireError("a MANIFEST answer nobody asked for")
                self.manifest_chunks.extend(ops.decode_json(frame.payload).get("entries", []))
                if frame.flags & FLAG_LAST:
                    self.manifest_answers[self.manifests_answered] = self.manifest_chunks
                    self.manifests_answered += 1
                    self.manifest_chunks = []
                    self.manifest_arrived.set()
                    self.manifest_arrived = trio.Event()
            case _:
                raise WireError(f"unexpected {frame.type.name} from the secondary")

    async def _progress_reporter(self) -> None:
        while True:
            await trio.sleep(0.5)
            if self.state is State.RESYNC:
                done, total = self.progress
                self._enqueue_ctrl(FrameType.PROGRESS, {"done": done, "total": total})

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(PING_INTERVAL)
            silent = trio.current_time() - self.last_heard
            if silent > self.spec.sendtimeout:
                raise Lost(f"nothing heard from the secondary for {silent:.1f} s (sendtimeout)")
            if silent >= PING_INTERVAL:
                self._enqueue_ctrl(FrameType.PING, {}, FLAG_ACK)

    # ------------------------------------------------------------------ resynchronisation
    async def _resync(self, mode: str) -> None:
        started = time.monotonic()
        sent_before = self.bytes_sent_estimate()
        self.state = State.RESYNC
        self.resync_mode = mode
        self.j0, self.journal = self.journal, Journal(self.journal.epoch)
        self.fullsync_requested = False
        log.info("resynchronising the secondary (%s)", mode)
        spec.emit(channel.Resyncing(mode))
        self._reset_manifests()
        self._enqueue_ctrl(FrameType.SYNC_BEGIN, {"mode": mode})
        # Every directory's manifest is asked for right behind SYNC_BEGIN, before any await lets a
        # live operation in: each describes the copy as this session found it. Asked only when the
        # pass reached a directory, a live write and its close-time times applied meanwhile could
        # give a file still missing a change made while the secondary was away the primary's size
        # and time, and the quick check would skip it (the native primary's fix, the same window).
        first = (
            {} if mode == "journal" else {i: self._ask_manifest(i, "none") for i in range(len(self.dir_fds))}
        )
        self.progress = [0, 0]
        for i, fd in enumerate(self.dir_fds):
            if mode == "journal":
                self.progress[1] += len(self.j0.entries.get(i, {}))
            else:
                self.progress[1] += sum(1 for _ in tree.walk(fd, self.exclusions[i]))
        for i in range(len(self.dir_fds)):
            if mode == "journal":
                await self._sync_journal(i, self.j0.entries.get(i, {}))
            else:
                await self._sync_compare(i, first[i], full=(mode == "full"))
        while self.pending:
            dir_index, path = self.pending.pop(0)
            self._send_object_now(dir_index, path)
            await trio.sleep(0)
        seq = self._enqueue_ctrl(FrameType.SYNC_END, {"generation": self.generation}, FLAG_ACK)
        # In sync from SYNC_END queued, not from its ACK: the secondary counts itself in sync (and
        # may take over) once it has applied SYNC_END, so an fsync after it must wait for the
        # secondary as any in-sync fsync does. A loss before the ACK is a loss while in sync (the
        # degrade handshake), and what the resync sent goes back to the journal (j0 kept until then).
        self.state = State.IN_SYNC
        while self.acked_applied < seq:
            event = self.ack_changed
            await event.wait()
        self.j0 = None
        elapsed = time.monotonic() - started
        sent = self.bytes_sent_estimate() - sent_before
        self.stats["resyncs"] += 1
        self.stats["last_resync"] = {"mode": mode, "seconds": round(elapsed, 3), "bytes": sent}
        log.info("secondary in sync (%s resync: %.2f s, %d bytes of data sent)", mode, elapsed, sent)
        spec.emit(channel.InSync(mode=mode, seconds=round(elapsed, 3), bytes=sent))

    def bytes_sent_estimate(self) -> int:
        return int(self.stats.get("data_bytes", 0))

    async def _sync_journal(self, dir_index: int, entries: dict[bytes, Entry]) -> None:
        for n, (path, entry) in enumerate(plan_order(entries)):
            self.progress[0] += 1
            if self.exclusions[dir_index].excluded(path):
                continue
            if entry.whole:
                if path:
                    self._enqueue_sync(dir_index, ops.RemoveTree(path))
                await self._send_tree(dir_index, path)
            else:
                await self._sync_journal_entry(dir_index, path, entry)
            if n % 64 == 63:
                await trio.sleep(0)

    def _reset_manifests(self) -> None:
        """A new session: no MANIFEST asked or answered yet (answers come in the order asked)."""
        self.manifests_asked = 0
        self.manifests_answered = 0
        self.manifest_chunks = []
        self.manifest_answers = {}
        self.manifest_arrived = trio.Event()

    def _ask_manifest(self, dir_index: int, sums: str, paths: Iterable[bytes] = ()) -> int:
        """Queue a MANIFEST_REQ now (at this point of the operation order); its ticket."""
        req: dict[str, Any] = {"sums": sums}
        if sums == "paths":
            req["paths"] = [ops.path_to_json(p) for p in paths]
        self._enqueue_ctrl(FrameType.MANIFEST_REQ, req, dir_index=dir_index)
        self.manifests_asked += 1
        return self.manifests_asked - 1

    async def _take_manifest(self, ticket: int) -> dict[bytes, tree.EntryInfo]:
        while ticket not in self.manifest_answers:
            await self.manifest_arrived.wait()
        chunks = self.manifest_answers.pop(ticket)
        return {e.path: e for e in (tree.EntryInfo.from_json(c) for c in chunks)}

    async def _request_manifest(
        self, dir_index: int, sums: str, paths: Iterable[bytes] = ()
    ) -> dict[bytes, tree.EntryInfo]:
        return await self._take_manifest(self._ask_manifest(dir_index, sums, paths))

    async def _sync_compare(self, dir_index: int, manifest: int, *, full: bool) -> None:
        dir_fd = self.dir_fds[dir_index]
        excl = self.exclusions[dir_index]
        remote = await self._take_manifest(manifest)
        # 1. what the secondary has and we do not (or with another type): removed first
        removed: list[bytes] = []
        for n, path in enumerate(sorted(remote, key=lambda p: p.split(b"/"))):
            if any(path.startswith(r + b"/") for r in removed[-1:]):
                continue
            try:
                st = tree.lstat(dir_fd, path)
                kind = tree.kind_of(st.st_mode)
            except FileNotFoundError:
                kind = ""
            if kind != remote[path].kind:
                self._enqueue_sync(dir_index, ops.RemoveTree(path))
                removed.append(path)
            if n % 256 == 255:
                await trio.sleep(0)
        gone = set(removed)
        # 2. everything we have, parents first; files that fail the quick check get compared by
        # checksum (full: all data is sent)
        candidates: list[bytes] = []
        for n, (path, _st) in enumerate(tree.walk(dir_fd, excl)):
            self.progress[0] += 1
            r = None if path in gone or any(path.startswith(g + b"/") for g in removed) else remote.get(path)
            if r is not None and r.kind == "f" and not full:
                st = tree.lstat(dir_fd, path)
                if self.quick_check and st.st_size == r.size and st.st_mtime_ns == r.mtime_ns:
                    await self._sync_entry(dir_index, path, r, data=False)
                    continue
                candidates.append(path)
                if len(candidates) >= SUMS_BATCH:
                    await self._sync_by_sums(dir_index, candidates)
                    candidates = []
                continue
            await self._sync_entry(dir_index, path, r, data=True)
            if n % 64 == 63:
                await trio.sleep(0)
        if candidates:
            await self._sync_by_sums(dir_index, candidates)
        self._sync_attrs(dir_index, b"", remote.get(b""))

    async def _sync_by_sums(self, dir_index: int, paths: list[bytes]) -> None:
        remote = await self._request_manifest(dir_index, "paths", paths)
        for path in paths:
            await self._sync_entry(dir_index, path, remote.get(path), data=True, use_sums=True)

    def _enqueue_sync(self, dir_index: int, op: ops.Operation) -> None:
        """A resynchronisation frame: ordered with the live operations, journaled like them."""
        self.send(dir_index, op)
        if isinstance(op, ops.Write):
            self.stats["data_bytes"] = self.stats.get("data_bytes", 0) + len(op.data)

    async def _sync_journal_entry(self, dir_index: int, path: bytes, entry: Entry) -> None:
        """Reintegrate one journal entry that is not sent whole: attributes, truncations, zones."""
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            if path:
                self._enqueue_sync(dir_index, ops.RemoveTree(path))
            return
        info = tree.entry_info(dir_fd, path, st)
        if info.kind == "d":
            if path:  # lenient on the secondary: an existing directory only gets its attributes
                self._enqueue_sync(dir_index, ops.Mkdir(path, info.mode, info.uid, info.gid))
            self._sync_attrs(dir_index, path, None)
        elif info.kind != "f":
            self._enqueue_sync(dir_index, ops.RemoveTree(path))
            self._send_object_now(dir_index, path)
        else:
            if entry.trunc is not None:
                self._enqueue_sync(dir_index, ops.Truncate(path, entry.trunc))
            self._enqueue_sync(dir_index, ops.Truncate(path, info.size))
            await self._send_file_data(dir_index, path, sorted(entry.zones), None)
            self._sync_attrs(dir_index, path, None)

    async def _sync_entry(
        self,
        dir_index: int,
        path: bytes,
        remote: tree.EntryInfo | None,
        *,
        data: bool = True,
        use_sums: bool = False,
    ) -> None:
        """Bring one object of the secondary (described by `remote`, None: it has none) to ours."""
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            return  # removed meanwhile: the live operation is in the stream
        info = tree.entry_info(dir_fd, path, st)
        if info.kind == "d":
            if remote is None and path:
                self._enqueue_sync(dir_index, ops.Mkdir(path, info.mode, info.uid, info.gid))
            self._sync_attrs(dir_index, path, remote, force=remote is None)
            return
        if info.kind != "f":
            if remote is None or (remote.target, remote.mode, remote.rdev) != (
                info.target,
                info.mode,
                info.rdev,
            ):
                if remote is not None:
                    self._enqueue_sync(dir_index, ops.RemoveTree(path))
                self._send_object_now_flat(dir_index, path)
            else:
                self._sync_attrs(dir_index, path, remote, force=False)
            return
        if remote is None or (data and not use_sums):
            # The whole content: a sparse copy of the right size, then the data extents only.
            if remote is None:
                self._enqueue_sync(dir_index, ops.Create(path, info.mode, info.uid, info.gid))
            else:
                self._enqueue_sync(dir_index, ops.Truncate(path, 0))
            self._enqueue_sync(dir_index, ops.Truncate(path, info.size))
            await self._send_file_data(dir_index, path, None, None)
            self._sync_attrs(dir_index, path, remote)
            return
        if remote.size != info.size:
            self._enqueue_sync(dir_index, ops.Truncate(path, info.size))
        if data:
            await self._send_file_data(dir_index, path, None, remote.sums)
        self._sync_attrs(dir_index, path, remote, force=data)

    def _sync_attrs(
        self, dir_index: int, path: bytes, remote: tree.EntryInfo | None, *, force: bool = True
    ) -> None:
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            return
        mask = ATTR_UID | ATTR_GID | ATTR_ATIME | ATTR_MTIME
        if not stat.S_ISLNK(st.st_mode):
            mask |= ATTR_MODE
        same = (
            remote is not None
            and remote.mode == (stat.S_IMODE(st.st_mode) | stat.S_IFMT(st.st_mode))
            and remote.uid == st.st_uid
            and remote.gid == st.st_gid
            and remote.mtime_ns == st.st_mtime_ns
        )
        if force or not same:
            self._enqueue_sync(
                dir_index,
                ops.SetAttr(path, mask, st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns),
            )
        self._sync_xattrs(dir_index, path, remote)

    def _sync_xattrs(self, dir_index: int, path: bytes, remote: tree.EntryInfo | None) -> None:
        """The secondary's extended attributes become ours: all removed, ours set (what was removed
        here while it was away goes too)."""
        dir_fd = self.dir_fds[dir_index]
        try:
            names = tree.list_xattrs(dir_fd, path)
        except OSError:
            return
        self._enqueue_sync(dir_index, ops.ClearXattrs(path))
        for name in names:
            try:
                value = tree.get_xattr(dir_fd, path, name)
            except OSError:
                continue
            self._enqueue_sync(dir_index, ops.SetXattr(path, name.encode(), value))

    def _send_object_now(self, dir_index: int, path: bytes) -> None:
        """Send one object whole, in this very step (no await: nothing can change it meanwhile).
        A directory is created with its attributes; its content follows through `_send_tree`."""
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            return
        info = tree.entry_info(dir_fd, path, st)
        if info.kind == "d":
            if path:
                self._enqueue_sync(dir_index, ops.Mkdir(path, info.mode, info.uid, info.gid))
            for child, _cst in tree.walk(dir_fd, self.exclusions[dir_index], path):
                self._send_object_now_flat(dir_index, child)
        else:
            self._send_object_now_flat(dir_index, path)

    def _send_object_now_flat(self, dir_index: int, path: bytes) -> None:
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            return
        info = tree.entry_info(dir_fd, path, st)
        match info.kind:
            case "d":
                self._enqueue_sync(dir_index, ops.Mkdir(path, info.mode, info.uid, info.gid))
            case "l":
                self._enqueue_sync(dir_index, ops.Symlink(path, info.target, info.uid, info.gid))
            case "o":
                self._enqueue_sync(dir_index, ops.Mknod(path, info.mode, info.rdev, info.uid, info.gid))
            case _:
                self._enqueue_sync(dir_index, ops.Create(path, info.mode, info.uid, info.gid))
                self._enqueue_sync(dir_index, ops.Truncate(path, info.size))
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    for zone in data_zones(fd, info.size):
                        data = os.pread(fd, ZONE, zone * ZONE)
                        if data:
                            self._enqueue_sync(dir_index, ops.Write(path, zone * ZONE, data))
                finally:
                    os.close(fd)
        self._sync_attrs(dir_index, path, None)

    async def _send_tree(self, dir_index: int, path: bytes) -> None:
        """Send `path` and everything under it whole, object by object (applications go on)."""
        dir_fd = self.dir_fds[dir_index]
        try:
            st = tree.lstat(dir_fd, path)
        except FileNotFoundError:
            return
        self._send_object_now_flat(dir_index, path) if path else self._sync_attrs(dir_index, b"", None)
        if not stat.S_ISDIR(st.st_mode):
            return
        for n, (child, _cst) in enumerate(tree.walk(dir_fd, self.exclusions[dir_index], path)):
            await self._sync_entry(dir_index, child, None)  # None: the secondary has nothing there
            if n % 64 == 63:
                await trio.sleep(0)

    async def _send_file_data(
        self, dir_index: int, path: bytes, zones: Iterable[int] | None, sums: tuple[bytes, ...] | None
    ) -> None:
        dir_fd = self.dir_fds[dir_index]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except (FileNotFoundError, IsADirectoryError):
            return
        try:
            ino = os.fstat(fd).st_ino
            size = os.fstat(fd).st_size
            # a whole file: its data extents only (holes stay holes on the sparse copy); with
            # checksums every zone is compared (a hole reads as zeros on both sides)
            wanted = (
                (data_zones(fd, size) if sums is None else range((size + ZONE - 1) // ZONE))
                if zones is None
                else zones
            )
            since_yield = 0
            for zone in wanted:
                if since_yield >= YIELD_EVERY or self.unapplied_bytes > self.spec.window_bytes:
                    since_yield = 0
                    await trio.sleep(0)
                    await self.throttle()
                    try:  # after an await, the path may name another file now
                        if tree.lstat(dir_fd, path).st_ino != ino:
                            return
                    except FileNotFoundError:
                        return
                offset = zone * ZONE
                data = os.pread(fd, ZONE, offset)
                if not data:
                    break
                if sums is not None and zone < len(sums) and tree.block_sum(data) == sums[zone]:
                    continue
                self._enqueue_sync(dir_index, ops.Write(path, offset, data))
                since_yield += 1
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ verify
    async def verify(self) -> dict[str, Any]:
        """Compare both copies at one point of the stream (read everything on both sides)."""
        if not self.connected or self.state is not State.IN_SYNC:
            return {
                "ok": False,
                "reason": f"the secondary is not in sync (link {self.state})",
                "differences": [],
            }
        differences: list[str] = []
        checked = 0
        for i, fd in enumerate(self.dir_fds):
            # Our manifest is taken in this very step: the secondary's answers the request queued in
            # the same step, so both describe the same point of the operation order.
            local = {e.path: e for e in tree.manifest(fd, self.exclusions[i], sums=True)}
            remote = await self._request_manifest(i, "all")
            for path in sorted(set(local) | set(remote)):
                a, b = local.get(path), remote.get(path)
                checked += 1
                where = f"{self.spec.dirs[i].path}/{path.decode(errors='replace')}"
                if a is None:
                    differences.append(f"only on the secondary: {where}")
                elif b is None:
                    differences.append(f"missing on the secondary: {where}")
                else:
                    diff = _differs(a, b)
                    if diff:
                        differences.append(f"{where}: {diff}")
        return {"ok": not differences, "checked": checked, "differences": differences[:1000]}


def data_zones(fd: int, size: int) -> list[int]:
    """The zones of a file that hold data (SEEK_DATA/SEEK_HOLE; every zone where that is not known)."""
    zones: list[int] = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            zones.extend(range(start // ZONE, (end + ZONE - 1) // ZONE))
            pos = end
    except OSError as exc:  # ENXIO: no data after pos
        if exc.errno != errno.ENXIO:
            return list(range((size + ZONE - 1) // ZONE))
    return sorted(set(zones))


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def link_failure(exc: BaseException) -> str:
    """Why a session ended, from what its tasks raised; re-raises what is not a link failure
    (cancellation, KeyboardInterrupt) and logs what is a bug (the link is then dropped and rebuilt)."""
    reasons: list[str] = []
    for leaf in leaves(exc):
        if isinstance(leaf, (Lost, WireError)):
            reasons.append(str(leaf))
        elif isinstance(
            leaf, (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError)
        ):
            reasons.append(f"connection lost: {leaf or type(leaf).__name__}")
        elif isinstance(leaf, Exception):
            log.error("internal error in the replication link", exc_info=leaf)
            reasons.append(f"internal error: {leaf!r}")
        else:
            raise exc
    return "; ".join(reasons) or "connection closed"


def _differs(a: tree.EntryInfo, b: tree.EntryInfo) -> str:  # noqa: PLR0911
    if a.kind != b.kind:
        return f"type {a.kind} here, {b.kind} there"
    if a.kind == "f" and a.size != b.size:
        return f"size {a.size} here, {b.size} there"
    if a.kind == "f" and a.sums != b.sums:
        return "content differs"
    if a.kind == "l" and a.target != b.target:
        return "symlink target differs"
    if (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid):
        return f"mode/owner {oct(a.mode)} {a.uid}:{a.gid} here, {oct(b.mode)} {b.uid}:{b.gid} there"
    if a.kind == "f" and a.mtime_ns != b.mtime_ns:
        return "modification time differs"
    return ""


# --------------------------------------------------------------------------- the process
class PrimaryProcess:
    def __init__(self, rfs: spec.RfsSpec) -> None:
        self.spec = rfs
        self.state_dir = Path(rfs.state_dir)
        self.journal_file = self.state_dir / "journal.json"
        self.mountpoint = self.state_dir / "mnt"
        self.dir_fds: list[int] = []
        self.mounted = False
        self.abandoned = False
        """safekitd closed the control channel without a stop command: it died."""

    def load_journal(self) -> Journal:
        try:
            journal = Journal.from_json(json.loads(self.journal_file.read_text()))
            if not journal.trusted:
                log.warning("the journal was not saved by a clean stop: the next resync compares checksums")
            return journal
        except FileNotFoundError:
            pass
        except (ValueError, KeyError) as exc:
            log.warning("journal unreadable (%s): the next resync compares checksums", exc)
        return Journal(uuid.uuid4().hex, trusted=False)

    def save_journal(self, journal: Journal, *, clean: bool) -> None:
        persist.write_bytes(self.journal_file, journal.dumps(clean=clean))

    def prepare(self) -> None:
        os.umask(0)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # What a dead replication process left (its dead FUSE mount, its binds) is removed without
        # looking through it: a stat of a dead or stuck FUSE mount can hang.
        mounts.detach_ours(str(self.mountpoint))
        # This node's copy is the reference now: its record as a secondary is history, except the
        # read-only binds it may have left after a crash.
        secondary_file = self.state_dir / "secondary.json"
        try:
            recorded = json.loads(secondary_file.read_text()).get("mounts") or []
        except (OSError, ValueError, AttributeError):
            recorded = []
        for d in self.spec.dirs:
            mounts.detach_ours(d.path, recorded)
            self.dir_fds.append(spec.open_dir(d.path))
        with contextlib.suppress(FileNotFoundError):
            secondary_file.unlink()
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    def run(self) -> int:
        journal = self.load_journal()
        # From now on a crash leaves an untrusted journal: what happens after this is not saved.
        self.save_journal(journal, clean=False)
        replicator = Replicator(self.spec, load_key(self.spec.key_file), journal, self.dir_fds)
        self.replicator = replicator
        fs = ReplicatedFS(self.dir_fds, replicator.exclusions, replicator)
        options = set(pyfuse3.default_options)
        options |= {"allow_other", f"fsname=safekit-{self.spec.module}", "subtype=safekit"}
        pyfuse3.init(fs, str(self.mountpoint), options)
        self.mounted = True
        try:
            trio.run(self._main)
        finally:
            self.unmount()
            replicator.journal.seq = replicator.seq
            self.save_journal(replicator.journal, clean=True)
        return 0

    def unmount(self) -> None:
        """Take the mount down once the FUSE loop is gone, never touching a path through it.

        Nothing answers FUSE requests any more: a `stat` of a replicated directory (its bind is this
        very mount) would wait forever, in this process too. So the connection is aborted first
        (pyfuse3.close closes /dev/fuse, which fails every waiting and later request with ENOTCONN,
        then lazily unmounts the mount point), and the binds are detached by name afterwards.
        """
        if not self.mounted:
            return
        self.mounted = False
        if self.abandoned:
            # safekitd died: the application it started may still run. Abort the connection (every
            # access fails with ENOTCONN) but leave the dead mounts over the directories, so that
            # nothing is written there unreplicated; the restarted safekitd stops the application,
            # then removes them (docs/replication.md, "Stopping and recovery").
            log.warning("safekitd is gone: the replicated directories fail (ENOTCONN) until it cleans up")
            with contextlib.suppress(Exception):
                pyfuse3.close(unmount=False)
            return
        try:
            pyfuse3.close(unmount=True)
        except Exception:
            log.exception("closing the FUSE session failed; detaching the mounts by name")
        for d in self.spec.dirs:
            try:
                mounts.detach_ours(d.path)
            except OSError as exc:
                log.error("%s: could not detach the replication mount: %s", d.path, exc)
        try:
            mounts.detach_ours(str(self.mountpoint))
        except OSError as exc:
            log.error("%s: could not detach the FUSE mount: %s", self.mountpoint, exc)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pyfuse3.main)
            for i, d in enumerate(self.spec.dirs):
                # In a thread: the bind looks the source up through this very FUSE mount.
                await trio.to_thread.run_sync(self._bind, i, d.path)
            spec.emit(channel.Mounted(tuple(d.path for d in self.spec.dirs)))
            spec.emit(channel.Degraded("starting: the secondary's copy is not known to follow this one yet"))
            log.info("replicated directories served: %s", ", ".join(d.path for d in self.spec.dirs))
            nursery.start_soon(self.replicator.connector)
            await self._control(nursery.cancel_scope)

    def _bind(self, index: int, path: str) -> None:
        spec.bind(str(self.mountpoint / str(index)), path, read_only=False)

    async def _control(self, scope: trio.CancelScope) -> None:
        r = self.replicator
        self.abandoned = True  # unless the loop below ends with a stop command
        async for command in control.commands():
            match command:
                case channel.Stop():
                    self.abandoned = False
                    break
                case channel.DegradeOk():
                    r.confirm_degraded()
                case channel.Fence():
                    r.fence()
                case channel.PeerLost():
                    r.lose("the peer is lost (all heartbeats)")
                case channel.SetGeneration(value=value):
                    r.generation = value
                case channel.Fullsync():
                    r.fullsync_requested = True
                    r.lose("full resynchronisation requested")
                case channel.Verify():
                    result = await r.verify()
                    spec.emit(
                        channel.VerifyResult(
                            ok=bool(result.get("ok")),
                            checked=int(result.get("checked", 0)),
                            differences=tuple(result.get("differences", ())),
                            reason=str(result.get("reason", "")),
                        )
                    )
                case channel.QueryStatus():
                    spec.emit(channel.StatusReport(str(r.state), r.seq, len(r.journal), dict(r.stats)))
                case channel.UnknownCommand(name=name):
                    log.warning("unknown command from safekitd ignored: %r", name)
        await self._stop()
        scope.cancel()

    async def _stop(self) -> None:
        r = self.replicator
        r.stopping = True
        if r.connected and r.state is State.IN_SYNC:
            # Leave the secondary with everything: wait (bounded) for the last operations. Every
            # acknowledged write is there already; this is for the writes nobody synced, and a role
            # change must not wait for a secondary that does not answer (STOP_FLUSH_TIMEOUT).
            with trio.move_on_after(min(r.spec.sendtimeout, STOP_FLUSH_TIMEOUT)):
                seq = r._enqueue_ctrl(FrameType.BYE, {}, FLAG_ACK)
                while r.connected and r.acked_applied < seq - 1:
                    event = r.ack_changed
                    await event.wait()


def main(spec_path: str) -> int:
    rfs = spec.RfsSpec.load(spec_path)
    setup(rfs, "primary")
    process = PrimaryProcess(rfs)
    try:
        process.prepare()
        return process.run()
    except Exception as exc:
        log.exception("replication (primary) failed")
        spec.emit(channel.Failed(str(exc)))
        return 1
    finally:
        for fd in process.dir_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
