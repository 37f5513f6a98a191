"""The secondary's replication process: receives the primary's operations and applies them, in order,
to its copy, which applications cannot write (a read-only bind mount over each replicated dir).

State that must survive (`secondary.json` in the module's rfs directory): which primary history
(`epoch`) the copy follows, whether it is in sync, whether the process stopped cleanly and on which
boot. A copy is trusted for reintegration from the primary's journal when it stopped cleanly or the
machine did not reboot since (the page cache still holds every applied operation).

After a split brain this node lost (safekitd passes `extra["diverged"]`), what it wrote since the
split is saved aside (`rfs.splitbrain`) before the primary is served at all; the pending save is
recorded in the state first, so a process that dies or is stopped meanwhile does it at its next start.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from safekit.host import persist
from safekit.membership.clusterkey import load_key
from safekit.rfs import channel, control, ops, spec, splitbrain, splitbrain_step, tree
from safekit.rfs.apply import Replica
from safekit.rfs.logsetup import setup
from safekit.rfs.wire import (
    APPLIED,
    FLAG_ACK,
    FLAG_LAST,
    Frame,
    FrameDecoder,
    FrameType,
    SequenceCheck,
    WireError,
    derive_hello_key,
    derive_session_key,
    encode_frame,
    new_nonce,
)

log = logging.getLogger("safekit.rfs.secondary")
ACK_EVERY_OPS = 256
ACK_EVERY_BYTES = 4 << 20
MANIFEST_CHUNK_BYTES = 2 << 20


@dataclass
class SecondaryState:
    epoch: str = ""
    in_sync: bool = False
    clean: bool = False
    boot_id: str = ""
    generation: int = 0
    mounts: list[list[object]] | None = None
    """The read-only binds this process made (to remove them, and only them, after a crash)."""
    dirs: list[list[int]] | None = None
    """(device, inode) of each replicated directory: another file system mounted there, or the
    directory replaced, means the copy is not the one this state describes."""
    splitbrain: dict[str, Any] | None = None
    """A split-brain save: {phase: saving|saved, dir, peer, generation, peer_generation}. `saving`:
    to do before the primary is served; `saved`: its manifest is completed after the resync."""

    @classmethod
    def load(cls, path: Path) -> SecondaryState:
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError:
            log.warning("%s is corrupt: the copy is treated as not in sync", path)
            return cls()
        keys = ("epoch", "in_sync", "clean", "boot_id", "generation", "dirs", "mounts", "splitbrain")
        return cls(**{k: obj[k] for k in keys if k in obj})

    def save(self, path: Path) -> None:
        persist.write_json(path, asdict(self))


class ProtocolClose(Exception):
    """End this connection (the reason is logged); the secondary waits for the next one."""


class Secondary:
    def __init__(self, rfs: spec.RfsSpec) -> None:
        self.spec = rfs
        self.key = load_key(rfs.key_file)
        self.state_dir = Path(rfs.state_dir)
        self.state_file = self.state_dir / "secondary.json"
        self.state = SecondaryState.load(self.state_file)
        self.dir_fds: list[int] = []
        self.replica: Replica | None = None
        self.current: trio.SocketStream | None = None
        self.stopping = False
        self.nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        os.umask(0)
        for d in self.spec.dirs:
            spec.unmount_ours(d.path, self.state.mounts)
            self.dir_fds.append(spec.open_dir(d.path))
        self.replica = Replica(self.dir_fds)
        trusted = self.state.clean or (self.state.boot_id == spec.boot_id() and self.state.boot_id != "")
        identity = [[os.fstat(fd).st_dev, os.fstat(fd).st_ino] for fd in self.dir_fds]
        if self.state.dirs is not None and self.state.dirs != identity:
            log.warning(
                "the replicated directories are not the ones last synchronised (another file system "
                "or a new directory): the copy is compared in full"
            )
            trusted = False
            self.state.in_sync = False
            self.state.epoch = ""
        self.state.dirs = identity
        self.trusted = trusted
        self._plan_splitbrain()
        # Applications on this node cannot write the copy: read-only over it, data underneath
        # (recorded, so that after a crash only these binds are removed).
        self.state.mounts = []
        for d in self.spec.dirs:
            self.state.mounts.append(spec.bind(d.path, d.path, read_only=True).key)
        self.state.clean = False
        self.state.boot_id = spec.boot_id()
        self.state.save(self.state_file)
        spec.emit(channel.Ready(in_sync=self.state.in_sync, epoch=self.state.epoch, trusted=trusted))

    def cleanup(self) -> None:
        if self.replica is not None:
            self.replica.close()
            try:
                self.replica.sync_all()
            except OSError as exc:
                log.warning("syncfs at stop failed: %s", exc)
        self.state.clean = True
        try:
            self.state.save(self.state_file)
        except OSError as exc:
            log.error("could not save %s: %s", self.state_file, exc)
        for d in self.spec.dirs:
            spec.unmount_ours(d.path, self.state.mounts)
        for fd in self.dir_fds:
            os.close(fd)
        self.dir_fds.clear()

    async def run(self) -> None:
        listener = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        listener.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await listener.bind((self.spec.local_addr, self.spec.port))
        listener.listen(4)
        listeners = [trio.SocketListener(listener)]
        spec.emit(channel.Listening(self.spec.local_addr, self.spec.port))
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._control, nursery.cancel_scope)
            if self.state.splitbrain is not None and self.state.splitbrain.get("phase") == "saving":
                # Before the primary is served: a connection waits in the listen queue meanwhile.
                await self._save_splitbrain()
            nursery.start_soon(trio.serve_listeners, self._serve, listeners)

    async def _control(self, scope: trio.CancelScope) -> None:
        async for command in control.commands():
            if isinstance(command, channel.Stop):
                break
        self.stopping = True
        scope.cancel()

    # ------------------------------------------------------------------ split brain (rule 4)
    def _plan_splitbrain(self) -> None:
        """Record a save to do (durably, with the rest of the state) when safekitd says this node
        stepped down from a split brain."""
        diverged = self.spec.extra.get("diverged")
        if not isinstance(diverged, dict):
            return
        pending = self.state.splitbrain
        if pending is not None and pending.get("phase") == "saving":
            return  # an interrupted save of the same split: the journal still names everything
        base = self.state_dir.parent / "splitbrain"
        existing = [p.name for p in base.iterdir()] if base.is_dir() else []
        name = splitbrain.dir_name(datetime.now(UTC), existing)
        self.state.splitbrain = {
            "phase": "saving",
            "dir": str(base / name),
            "peer": str(diverged.get("peer") or self.spec.peer),
            "generation": diverged.get("generation"),
            "peer_generation": diverged.get("peer_generation"),
            "split_at": diverged.get("split_at"),
        }
        self.state.in_sync = False
        log.warning(
            "split brain: %s stepped down; what it changed since the split is saved under %s before "
            "the resynchronisation from %s",
            self.spec.node,
            base / name,
            self.state.splitbrain["peer"],
        )

    def _replicated(self) -> list[splitbrain.Replicated]:
        return splitbrain_step.replicated(self.spec, self.dir_fds)

    async def _save_splitbrain(self) -> None:
        pending = self.state.splitbrain
        assert pending is not None
        target = Path(str(pending["dir"]))
        context = splitbrain_step.context(self.spec, pending)
        journal_file = self.state_dir / "journal.json"
        manifest = splitbrain.read_manifest(target)  # saved before a crash: never redone over
        if manifest is None:
            keep = splitbrain_step.keep_free(self.spec)
            started = time.monotonic()
            work = functools.partial(
                splitbrain.save,
                context,
                self._replicated(),
                splitbrain.load_journal(journal_file),
                target,
                keep=keep,
                should_stop=lambda: self.stopping,
            )
            try:
                manifest = await trio.to_thread.run_sync(work)
            except splitbrain.Interrupted:
                log.warning(
                    "split brain: the save under %s was interrupted; it is done at the next start", target
                )
                return
            except OSError as exc:
                raise RuntimeError(splitbrain_step.failure(self.spec, context, target, exc)) from exc
            log.info("split brain: save took %.2f s", time.monotonic() - started)
        splitbrain.forget_journal(journal_file, persist.write_bytes)
        pending["phase"] = "saved"
        self.state.save(self.state_file)
        spec.emit(splitbrain_step.saved_event(manifest, target))

    def splitbrain_resynced(self) -> None:
        """The resynchronisation ended: complete the last save's manifest with what the winner has."""
        pending = self.state.splitbrain
        if pending is None or pending.get("phase") != "saved":
            return
        self.state.splitbrain = None  # saved with the in-sync state by the caller
        if self.nursery is not None:
            self.nursery.start_soon(self._annotate, Path(str(pending["dir"])))

    async def _annotate(self, target: Path) -> None:
        work = functools.partial(
            splitbrain.annotate, target, self._replicated(), finished_at=datetime.now(UTC).timestamp()
        )
        try:
            manifest = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except (OSError, ValueError) as exc:
            log.warning("split brain: could not complete %s/%s: %s", target, splitbrain.MANIFEST, exc)
            return
        if manifest is not None:
            splitbrain_step.log_annotated(manifest, target)

    async def adopt(self, stream: trio.SocketStream) -> None:
        """A connection proved it is the primary's (a frame under the session key): it replaces the
        previous one. Until then a forged or replayed handshake cannot disturb the current one."""
        if self.current is not None and self.current is not stream:
            log.info("a new connection from the primary replaces the previous one")
            await self.current.aclose()
        self.current = stream

    # ------------------------------------------------------------------ one connection
    async def _serve(self, stream: trio.SocketStream) -> None:
        peer = stream.socket.getpeername()
        if peer[0] != self.spec.peer_addr:
            log.warning(
                "refused a replication connection from %s (expected %s)", peer[0], self.spec.peer_addr
            )
            await stream.aclose()
            return
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(self, stream)
        try:
            await session.run()
        except (WireError, ProtocolClose) as exc:
            log.warning("replication connection closed: %s", exc)
            spec.emit(channel.Disconnected(str(exc)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            spec.emit(channel.Disconnected(f"connection lost: {exc}"))
        except Exception as exc:  # a bug: this connection ends, the process and the copy's state stay
            log.exception("internal error on the replication connection")
            o_state = self.state
            o_state.in_sync = False
            o_state.save(self.state_file)
            spec.emit(channel.Disconnected(f"internal error: {exc!r}"))
        finally:
            if self.current is stream:
                self.current = None
            if self.replica is not None:
                self.replica.lenient = False
            await stream.aclose()


class _Session:
    def __init__(self, owner: Secondary, stream: trio.SocketStream) -> None:
        self.o = owner
        self.stream = stream
        self.decoder = FrameDecoder(derive_hello_key(owner.key, owner.spec.module))
        self.send_key = self.decoder.key
        self.out_seq = 0
        self.check: SequenceCheck | None = None
        self.received = 0
        self.applied = 0
        self.acked = 0
        self.unacked_bytes = 0
        self.async_none = False

    async def _frame(self) -> Frame:
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            data = await self.stream.receive_some(1 << 20)
            if not data:
                raise ProtocolClose("the primary closed the connection")
            self.decoder.feed(data)

    async def _send(self, ftype: FrameType, payload: bytes, flags: int = 0) -> None:
        self.out_seq += 1
        await self.stream.send_all(encode_frame(self.send_key, Frame(ftype, self.out_seq, payload, flags)))

    async def run(self) -> None:
        o = self.o
        hello = await self._frame()
        if hello.type is not FrameType.HELLO:
            raise WireError(f"expected HELLO, got {hello.type.name}")
        h = ops.decode_json(hello.payload)
        if h.get("module") != o.spec.module or h.get("node") != o.spec.peer:
            raise ProtocolClose(
                f"HELLO for module {h.get('module')!r} from {h.get('node')!r}: not our primary"
            )
        if int(h.get("dirs", -1)) != len(o.spec.dirs):
            raise ProtocolClose(
                f"the primary replicates {h.get('dirs')} directories, this node {len(o.spec.dirs)}: "
                "userconfig.xml differs between the nodes"
            )
        nonce = new_nonce()
        p_nonce = bytes.fromhex(str(h["nonce"]))
        reply = {
            "node": o.spec.node,
            "nonce": nonce.hex(),
            "epoch": o.state.epoch,
            "trusted": o.trusted,
            "in_sync": o.state.in_sync,
            "fullsync": bool(o.spec.extra.get("fullsync")),
        }
        self.out_seq = 0
        await self.stream.send_all(
            encode_frame(self.send_key, Frame(FrameType.HELLO_OK, 0, ops.encode_json(reply)))
        )
        key = derive_session_key(o.key, o.spec.module, p_nonce, nonce)
        self.decoder.key = key
        self.send_key = key
        first = int(h["first_seq"])
        self.check = SequenceCheck(first)
        self.received = self.applied = self.acked = first - 1
        self.async_none = h.get("async") == "none"
        first_frame = await self._frame()  # under the session key: only the real primary gets here
        await o.adopt(self.stream)
        epoch = str(h["epoch"])
        if epoch != o.state.epoch:
            # Another primary history from now on: whatever follows rewrites the copy.
            o.state.epoch = epoch
            o.state.in_sync = False
            o.state.save(o.state_file)
        spec.emit(channel.Connected(o.spec.peer, epoch))
        log.info("replication connected with %s (epoch %s, from sequence %d)", o.spec.peer, epoch, first)
        await self._handle(first_frame)
        while True:
            frame = self.decoder.next_frame()
            if frame is None:
                await self._maybe_ack(force=False)
                data = await self.stream.receive_some(1 << 20)
                if not data:
                    raise ProtocolClose("the primary closed the connection")
                self.decoder.feed(data)
                continue
            await self._handle(frame)

    async def _maybe_ack(self, *, force: bool) -> None:
        if self.applied == self.acked and not force:
            return
        await self._send(FrameType.ACK, ops.encode_ack(self.received, self.applied, self.applied))
        self.acked = self.applied
        self.unacked_bytes = 0

    async def _handle(self, frame: Frame) -> None:  # noqa: PLR0912, PLR0915
        o = self.o
        assert self.check is not None and o.replica is not None
        self.check.check(frame)
        self.received = frame.seq
        if frame.type in APPLIED:
            op = ops.decode_op(frame.type, frame.payload, frame.flags)
            try:
                if isinstance(op, ops.Fsync):
                    if self.async_none:
                        o.replica.fsync(frame.dir, op.path, op.datasync)
                else:
                    o.replica.apply(frame.dir, op)
            except OSError as exc:
                await self._fail(frame, op, exc)
            except (ValueError, TypeError) as exc:
                await self._fail(frame, op, OSError(errno.EINVAL, str(exc)))
            self.applied = frame.seq
            self.unacked_bytes += len(frame.payload)
            if frame.flags & FLAG_ACK:
                await self._maybe_ack(force=True)
            elif self.applied - self.acked >= ACK_EVERY_OPS or self.unacked_bytes >= ACK_EVERY_BYTES:
                await self._maybe_ack(force=False)
            return
        match frame.type:
            case FrameType.SYNC_BEGIN:
                info = ops.decode_json(frame.payload)
                o.state.in_sync = False
                o.state.save(o.state_file)  # durable before the copy stops being a prefix
                o.replica.lenient = True
                spec.emit(channel.Resyncing(str(info.get("mode", ""))))
            case FrameType.SYNC_END:
                info = ops.decode_json(frame.payload)
                await trio.to_thread.run_sync(o.replica.sync_all)
                o.replica.lenient = False
                o.state.in_sync = True
                o.state.generation = int(info.get("generation", 0))
                o.splitbrain_resynced()
                o.state.save(o.state_file)
                spec.emit(channel.InSync(generation=o.state.generation))
                log.info("copy in sync with the primary (generation %d)", o.state.generation)
            case FrameType.MANIFEST_REQ:
                info = ops.decode_json(frame.payload)
                paths = [ops.path_from_json(p) for p in info.get("paths", [])]
                await self._send_manifest(frame.dir, str(info.get("sums", "none")), paths)
            case FrameType.PING:
                pass
            case FrameType.PROGRESS:
                info = ops.decode_json(frame.payload)
                done, total = int(info.get("done", 0)), int(info.get("total", 0))
                spec.emit(channel.Progress(min(99, 100 * done // total) if total else 0))
            case FrameType.BYE:
                self.applied = frame.seq
                await self._maybe_ack(force=True)
                raise ProtocolClose("the primary ended the session")
            case _:
                raise WireError(f"unexpected {frame.type.name} from the primary")
        self.applied = frame.seq
        await self._maybe_ack(force=bool(frame.flags & FLAG_ACK) or frame.type is FrameType.PING)

    async def _fail(self, frame: Frame, op: ops.Operation, exc: OSError) -> None:
        o = self.o
        what = f"{type(op).__name__} {getattr(op, 'path', b'').decode(errors='replace')!r}"
        if exc.errno == errno.ENOSPC:
            reason = f"the secondary's disk is full ({what}): this node leaves sync; free space, it resyncs"
        else:
            reason = f"could not apply {what} on the secondary: {exc.strerror or exc}"
        log.error("%s", reason)
        o.state.in_sync = False
        try:
            o.state.save(o.state_file)
        except OSError as save_exc:
            log.error("could not record leaving sync: %s", save_exc)
        spec.emit(channel.ApplyError(reason, exc.errno or 0))
        payload = ops.encode_json({"seq": frame.seq, "errno": exc.errno or 0, "reason": reason})
        await self._send(FrameType.ERROR, payload)
        raise ProtocolClose(reason)

    async def _send_manifest(self, dir_index: int, sums: str, paths: list[bytes]) -> None:
        """`sums`: none (metadata only), all (block checksums of every file), paths (metadata and
        checksums of `paths` only)."""
        o = self.o
        if dir_index >= len(o.dir_fds):
            raise WireError(f"manifest asked for directory #{dir_index}")
        exclusions = o.spec.dirs[dir_index].exclusions()
        dir_fd = o.dir_fds[dir_index]

        def build() -> list[dict[str, Any]]:
            if sums == "paths":
                return [e.to_json() for e in tree.entries_with_sums(dir_fd, paths)]
            return [e.to_json() for e in tree.manifest(dir_fd, exclusions, sums=sums == "all")]

        started = time.monotonic()
        entries = await trio.to_thread.run_sync(build)
        log.info("manifest of %d entries in %.2f s (sums=%s)", len(entries), time.monotonic() - started, sums)
        chunk: list[dict[str, Any]] = []
        size = 0
        for i, entry in enumerate(entries):
            chunk.append(entry)
            size += 100 + len(entry.get("h", ""))
            if size >= MANIFEST_CHUNK_BYTES and i + 1 < len(entries):
                await self._send(FrameType.MANIFEST, ops.encode_json({"entries": chunk}))
                chunk, size = [], 0
        await self._send(FrameType.MANIFEST, ops.encode_json({"entries": chunk}), FLAG_LAST)


def main(spec_path: str) -> int:
    rfs = spec.RfsSpec.load(spec_path)
    setup(rfs, "secondary")
    secondary = Secondary(rfs)
    try:
        secondary.prepare()
        trio.run(secondary.run)
    except Exception as exc:
        log.exception("replication (secondary) failed")
        spec.emit(channel.Failed(str(exc)))
        return 1
    finally:
        secondary.cleanup()
    return 0
