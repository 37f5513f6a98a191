"""Entry point of `safekitd`: the per-node daemon.

It runs in the foreground (under systemd, a `Type=notify` service with the watchdog: see
sdnotify.py and packaging/systemd/safekitd.service) or as a plain supervised process with
`--daemon` and `--pidfile` on hosts without systemd, such as lab hosts.
SIGTERM or SIGINT (or `safekit shutdown`) stop it gracefully: every module is stopped (stop scripts,
VIP released) first. SIGUSR1 writes every task's and thread's stack to the log (daemon/diagnostics.py).
SIGHUP reloads cluster.xml where it can be applied live (`safekit cluster reload`; daemon/cluster_reload.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
from pathlib import Path

from safekit import __version__
from safekit.api.server import start_api
from safekit.daemon import allocator, diagnostics, logsetup, memtrace, workers
from safekit.daemon.node import Node, NodeError
from safekit.daemon.sdnotify import Notifier
from safekit.host.paths import Paths
from safekit.host.priority import raise_own_priority
from safekit.host.supervised import daemonize, running_pid

log = logging.getLogger("safekit.daemon")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safekitd", description="safekit node daemon")
    p.add_argument("--version", action="version", version=f"safekitd {__version__}")
    p.add_argument("--node", help="this node's name in cluster.xml (default: found by hostname or address)")
    p.add_argument("--daemon", action="store_true", help="detach from the terminal (hosts without systemd)")
    p.add_argument("--pidfile", type=Path, help="write the daemon's PID here; refuse to start if it runs")
    p.add_argument("--health-port", type=int, default=9010, help="health and metrics port (default 9010)")
    p.add_argument("--health-address", default="0.0.0.0", help="health listen address (default all)")  # noqa: S104
    p.add_argument("--api-port", type=int, default=9453, help="HTTPS port of the API and console (0: off)")
    p.add_argument("--api-address", default="0.0.0.0", help="API listen address (default all)")  # noqa: S104
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format", default="text", choices=logsetup.FORMATS, help="text (default) or json lines"
    )
    p.add_argument(
        "--log-max-bytes",
        type=int,
        default=logsetup.DEFAULT_MAX_BYTES,
        help="rotate safekitd.log at this size (default 10 MiB; 0: never)",
    )
    p.add_argument(
        "--log-backups", type=int, default=logsetup.DEFAULT_BACKUPS, help="rotated files kept (default 5)"
    )
    p.add_argument(
        "--nice",
        type=int,
        default=-5,
        help="safekitd's own nice value, so heartbeats leave on time on a loaded host (default -5; "
        "scripts and checkers run at 0)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("safekitd: must run as root (virtual IPs, raw ICMP, scripts)", file=sys.stderr)
        return 77
    if argv is None:  # the real daemon (not a test calling main): its allocator gives memory back
        allocator.ensure_system_allocator(sys.argv)
    paths = Paths.from_env()
    if args.pidfile is not None:
        running = running_pid(args.pidfile)
        if running is not None:
            print(f"safekitd: already running (pid {running}, {args.pidfile})", file=sys.stderr)
            return 1
    if args.daemon:
        daemonize()
    notifier = Notifier.from_env()  # read (and removed from the scripts' environment) before anything runs
    logsetup.setup(
        paths.daemon_log,
        logsetup.LogSettings(args.log_level, args.log_format, args.log_max_bytes, args.log_backups),
        detached=args.daemon,
    )
    if not args.daemon:  # an abort by systemd's watchdog (SIGABRT) shows where the loop hung, in the journal
        faulthandler.enable()
    raise_own_priority(args.nice)
    if args.pidfile is not None:
        args.pidfile.parent.mkdir(parents=True, exist_ok=True)
        args.pidfile.write_text(f"{os.getpid()}\n", encoding="ascii")
    try:
        code = asyncio.run(_run(paths, args, notifier))
    finally:
        if args.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                args.pidfile.unlink()
    workers.exit_now_if_blocked(code)
    return code


async def _run(paths: Paths, args: argparse.Namespace, notifier: Notifier) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(workers.BoundedExecutor())  # a blocked worker cannot keep it running
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, diagnostics.dump_state)  # an operator asks what it is doing
    trace_period = memtrace.period_from_env()
    tracer = (
        asyncio.create_task(memtrace.trace_memory(paths.log / "tracemalloc.txt", trace_period))
        if trace_period is not None
        else None
    )
    trimmer = asyncio.create_task(allocator.trim_loop())
    watchdog = notifier.start_watchdog()  # from the start: module start scripts may take long
    node = Node(
        paths,
        node_name=args.node,
        health_address=args.health_address,
        health_port=args.health_port,
        request_stop=stop.set,  # `safekit shutdown`: the same graceful stop as SIGTERM
    )
    try:
        await node.start()
    except NodeError as exc:
        log.error("%s", exc)
        await node.stop()
        await notifier.stop_watchdog(watchdog)
        return 78  # EX_CONFIG
    # The API's logins hash with scrypt (16 MiB each, in worker threads): keep blocks that large
    # out of the threads' heaps, or each thread keeps 16 MiB resident for good (docs/api.md,
    # "Memory"; ADR 0039). Set before the API starts, so no login runs with the dynamic threshold.
    if not allocator.fix_mmap_threshold():
        log.info("mallopt is not available (not glibc): logins may leave memory in the heaps")
    reloads: set[asyncio.Task[dict[str, object]]] = set()

    def reload_cluster() -> None:  # SIGHUP: `safekit cluster reload` (its answer goes to the log)
        task = asyncio.create_task(node.reload_cluster())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_cluster)
    api = await start_api(node, paths, args.api_address, args.api_port)
    log.info("safekitd %s running (pid %d)", __version__, os.getpid())
    notifier.ready(f"running, node {node.node_name}")
    await stop.wait()
    log.info("stopping: stopping every module first")
    notifier.stopping("stopping every module first")
    if api is not None:
        await api.stop()
    await node.stop()
    trimmer.cancel()
    await notifier.stop_watchdog(watchdog)
    if tracer is not None:
        tracer.cancel()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
