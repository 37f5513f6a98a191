"""`safekit arbiter ...`: run the arbitrating witness, query it, and write its key.

Argument parsing and output only; the service is server.py, the client client.py, the key keys.py.
Errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from safekit.arbiter import keys, server, wire
from safekit.arbiter.client import ArbiterClient, LeaseAnswer
from safekit.arbiter.generations import DEFAULT_STATE_DIR, GenerationStateError, GenerationStore
from safekit.host.supervised import daemonize, running_pid
from safekit.membership.clusterkey import ClusterKeyError, load_key
from safekit.mirror.states import ReplicaRank

EXIT_ERROR = 1
EXIT_REFUSED = 3
"""`safekit arbiter request`: the arbiter answered and refused the lease."""
EXIT_NO_ANSWER = 4
"""`safekit arbiter request/release/status`: no valid answer in time."""


class ArbiterCliError(Exception):
    """A refused command; the message is the whole explanation."""


def add_parser(subparsers: Any) -> None:
    arbiter = subparsers.add_parser(
        "arbiter",
        help="the arbitrating witness: a lease service that lets one node of a mirror serve at a time",
        description="The arbitrating witness (docs/arbiter.md): a small UDP service, run on the witness "
        "host, that grants each module's lease to one node at a time, so a split between the nodes can "
        "never give two primaries.",
    )
    commands = arbiter.add_subparsers(dest="arbiter_command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the service (foreground; --daemon to detach)")
    serve.add_argument(
        "--listen",
        default="0.0.0.0",  # noqa: S104 - a witness serves the nodes' LAN
        metavar="ADDR[:PORT]",
        help=f"address to listen on (default 0.0.0.0:{wire.DEFAULT_PORT})",
    )
    serve.add_argument(
        "--key-file",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="an arbiter key file ('safekit arbiter key'); repeat it to serve several clusters",
    )
    serve.add_argument("--log-file", type=Path, help="log here (default: stderr)")
    serve.add_argument("--pidfile", type=Path, help="write the PID here; refuse to start if that PID runs")
    serve.add_argument(
        "--daemon", action="store_true", help="detach from the terminal (hosts without systemd)"
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the highest replica generation per module is kept (default {DEFAULT_STATE_DIR}, "
        "created with mode 0700)",
    )
    serve.add_argument(
        "--reset-generations",
        action="store_true",
        help="forget every recorded replica generation (also a corrupt state file) and start; WEAKER: "
        "until each module's primary renews, a node with an older copy may be granted the lease",
    )

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--address", required=True, metavar="ADDR[:PORT]", help="the arbiter's address")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--cluster-key", type=Path, metavar="FILE", help="the cluster key file")
        which.add_argument("--key-file", type=Path, metavar="FILE", help="or the arbiter key file")
        p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer (default 2)")
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
        return p

    status = client_command("status", "show the leases the arbiter holds for this cluster")
    status.add_argument("--module", metavar="AM", help="one module only")
    status.add_argument("--node", default="status", help="name to query as (default: status)")

    request = client_command(
        "request", "ask for a module's lease as NODE (a diagnostic; safekitd does this by itself)"
    )
    request.add_argument("--module", required=True, metavar="AM")
    request.add_argument("--node", required=True, help="the node name to ask as")
    request.add_argument("--duration", type=float, default=3.0, help="lease seconds asked (default 3)")
    request.add_argument(
        "--generation",
        type=int,
        default=0,
        metavar="N",
        help="the replica generation of this node's copy (default 0); refused as outdated when its rank "
        "(confirmed, generation) is below the highest the arbiter granted",
    )
    request.add_argument(
        "--confirmed",
        type=int,
        default=None,
        metavar="N",
        help="the newest generation at which this copy holds every acknowledged write (default: the "
        "generation)",
    )
    request.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep renewing for SECONDS (every duration/3), printing each answer; then stop renewing",
    )
    release = client_command("release", "give a module's lease up as NODE (a diagnostic)")
    release.add_argument("--module", required=True, metavar="AM")
    release.add_argument("--node", required=True, help="the node name to release as")

    key = commands.add_parser(
        "key",
        help="write the arbiter key derived from the cluster key (for the witness host)",
        description="Write the arbiter key file for the witness host: HMAC-SHA256(cluster key, "
        "'safekit arbiter key v1'). It lets the arbiter check the nodes' requests but cannot forge "
        "heartbeats. Mode 0600; a file that already holds this key is left as it is.",
    )
    key.add_argument("--cluster-key", required=True, type=Path, metavar="FILE", help="the cluster key file")
    key.add_argument("--out", required=True, type=Path, metavar="FILE", help="the arbiter key file to write")
    key.add_argument("--force", action="store_true", help="replace a file that holds another key")
    key.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    handlers = {"serve": _serve, "status": _status, "request": _request, "release": _release, "key": _key}
    try:
        return handlers[args.arbiter_command](args)
    except (ArbiterCliError, keys.ArbiterKeyError, ClusterKeyError, GenerationStateError) as exc:
        print(f"safekit arbiter {args.arbiter_command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def parse_endpoint(text: str, default_port: int = wire.DEFAULT_PORT) -> tuple[str, int]:
    """`ADDR`, `ADDR:PORT`, `[V6ADDR]:PORT` or `V6ADDR` -> (address, port)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ArbiterCliError(f"{text!r}: write an IPv6 address with a port as [ADDR]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ArbiterCliError(f"{text!r}: no address")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ArbiterCliError(f"{text!r}: the port must be a number in 1..65535")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ArbiterCliError(f"{text!r}: {host!r} is not an IP address (names are not resolved)") from None
    return host, port


def _key(args: argparse.Namespace) -> int:
    arbiter_key = keys.derive_arbiter_key(load_key(args.cluster_key))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    changed = keys.write_key_file(args.out, arbiter_key, overwrite=args.force)
    cid = keys.cluster_id(arbiter_key).hex()
    if args.json:
        print(json.dumps({"out": str(args.out), "changed": changed, "cluster_id": cid}))
    else:
        state = "written" if changed else "already up to date; nothing to do"
        print(f"{args.out}: arbiter key of cluster {cid} {state}")
    return 0


def _arbiter_key(args: argparse.Namespace) -> bytes:
    if args.key_file is not None:
        return keys.load_key(args.key_file)
    return keys.derive_arbiter_key(load_key(args.cluster_key))


def _client(args: argparse.Namespace, node: str) -> ArbiterClient:
    host, port = parse_endpoint(args.address)
    try:
        wire.check_name("node", node)
    except ValueError as exc:
        raise ArbiterCliError(str(exc)) from None
    if args.cluster_key is not None:
        return ArbiterClient(host, port, load_key(args.cluster_key), node)
    return ArbiterClient.from_arbiter_key(host, port, keys.load_key(args.key_file), node)


def _check_module(module: str | None) -> None:
    if module is not None:
        try:
            wire.check_name("module", module)
        except ValueError as exc:
            raise ArbiterCliError(str(exc)) from None


def _status(args: argparse.Namespace) -> int:
    _check_module(args.module)
    client = _client(args, args.node)

    async def ask() -> wire.Answer | None:
        try:
            return await client.status(args.module, args.timeout)
        finally:
            client.close()

    answer = asyncio.run(ask())
    if answer is None:
        print(
            f"safekit arbiter status: no answer from {args.address} within {args.timeout:g}s", file=sys.stderr
        )
        return EXIT_NO_ANSWER
    leases = [
        {
            "module": e.module,
            "holder": e.holder or None,
            "remaining": e.remaining_ms / 1000,
            "generation": e.generation,
            "confirmed": e.confirmed,
            "rank": ReplicaRank(e.confirmed, e.generation).describe(),
        }
        for e in answer.entries
    ]
    grace = answer.remaining_ms / 1000
    if args.json:
        out = {
            "arbiter": args.address,
            "grace_remaining": grace,
            "leases": leases,
            "truncated": answer.truncated,
        }
        print(json.dumps(out, indent=2))
        return 0
    if grace > 0:
        print(f"arbiter restarted recently: grants nothing for another {grace:.1f}s")
    if not leases:
        print("no lease held and no generation known" + (f" for module {args.module}" if args.module else ""))
    for lease in leases:
        held = f"held by {lease['holder']} for {lease['remaining']:.1f}s" if lease["holder"] else "no holder"
        print(f"{lease['module']}: {held}, highest copy {lease['rank']}")
    if answer.truncated:
        print("(more leases than fit in one answer: ask with --module)")
    return 0


def _print_lease(answer: LeaseAnswer, module: str, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "module": module,
                    "granted": answer.granted,
                    "holder": answer.holder,
                    "remaining": answer.remaining,
                    "detail": answer.detail,
                    "outdated": answer.outdated,
                    "generation": answer.generation,
                    "confirmed": answer.confirmed,
                }
            ),
            flush=True,
        )
    else:
        print(f"{module}: {answer.detail}", flush=True)


def _request(args: argparse.Namespace) -> int:
    _check_module(args.module)
    if not 0 <= args.generation < 2**64:
        raise ArbiterCliError(f"--generation {args.generation}: a replica generation is in 0..2^64-1")
    if args.confirmed is not None and not 0 <= args.confirmed <= args.generation:
        raise ArbiterCliError(f"--confirmed {args.confirmed}: at most the generation ({args.generation})")
    client = _client(args, args.node)

    async def ask() -> int:
        try:
            end = time.monotonic() + args.hold
            while True:
                answer = await client.request(
                    args.module, args.duration, args.timeout, args.generation, args.confirmed
                )
                if answer is None:
                    print(f"{args.module}: no answer within {args.timeout:g}s", flush=True)
                    status = EXIT_NO_ANSWER
                else:
                    _print_lease(answer, args.module, args.json)
                    status = 0 if answer.granted else EXIT_REFUSED
                if time.monotonic() >= end:
                    return status
                await asyncio.sleep(min(args.duration / 3, max(0.0, end - time.monotonic())))
        finally:
            client.close()

    return asyncio.run(ask())


def _release(args: argparse.Namespace) -> int:
    _check_module(args.module)
    client = _client(args, args.node)

    async def ask() -> bool:
        try:
            return await client.release(args.module, args.timeout)
        finally:
            client.close()

    if not asyncio.run(ask()):
        print(f"{args.module}: no answer within {args.timeout:g}s", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(f"{args.module}: released")
    return 0


def _serve(args: argparse.Namespace) -> int:
    host, port = parse_endpoint(args.listen)
    loaded: dict[str, bytes] = {}
    for path in args.key_file:
        key = keys.load_key(path)
        for source, other in loaded.items():
            if other == key:
                raise ArbiterCliError(f"{path}: the same key as {source}")
        loaded[str(path)] = key
    if args.pidfile is not None:
        running = running_pid(args.pidfile)
        if running is not None:
            raise ArbiterCliError(f"already running (pid {running}, {args.pidfile})")
    # Before detaching: a state file that cannot be trusted stops the start with a message on stderr.
    store, generations, reset_note = _load_generations(args.state_dir, reset=args.reset_generations)
    if args.daemon:
        daemonize()
    _setup_logging(args.log_file, args.log_level, to_stderr=not args.daemon)
    if reset_note is not None:
        logging.getLogger("safekit.arbiter").warning(
            "%s; until each module's primary renews its lease, a node with an older copy may be granted it",
            reset_note,
        )
    if args.pidfile is not None:
        args.pidfile.parent.mkdir(parents=True, exist_ok=True)
        args.pidfile.write_text(f"{os.getpid()}\n", encoding="ascii")
    try:
        return asyncio.run(server.serve(loaded, host, port, store, generations))
    except OSError as exc:
        logging.getLogger("safekit.arbiter").error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        if not args.daemon:
            print(f"safekit arbiter serve: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if args.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                args.pidfile.unlink()


def _load_generations(
    state_dir: Path, *, reset: bool
) -> tuple[GenerationStore, dict[tuple[bytes, str], ReplicaRank], str | None]:
    """The store, the generations to start with, and what a reset forgot (None: no reset)."""
    store = GenerationStore(state_dir)
    store.prepare()
    if not reset:
        return store, store.load(), None
    try:
        note = f"--reset-generations: {len(store.load())} recorded replica generation(s) forgotten"
    except GenerationStateError as exc:
        note = f"--reset-generations: unreadable state file replaced ({exc})"
    store.save({})
    return store, {}, note


def _setup_logging(log_file: Path | None, level: str, *, to_stderr: bool) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger("safekit.arbiter")
    logger.setLevel(level)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    if to_stderr or log_file is None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        logger.addHandler(stream)
