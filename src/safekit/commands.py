"""The engine commands of `safekit` (SafeKit's names and meaning), as a thin client of safekitd.

Each command becomes one request on the local control socket; the daemon decides and answers.
`state -lq` exit codes are SafeKit's: STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4. `--json` prints
the daemon's answer as it is. `cluster genkey` and `config check` work without a daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from safekit.daemon import control
from safekit.daemon.paths import Paths
from safekit.membership import clusterkey

STATE_UNKNOWN = 5
"""`state -m AM -lq` when safekitd does not answer (SafeKit's codes stop at 4)."""
STATE_EXIT_CODES = {"STOP": 0, "WAIT": 1, "ALONE": 2, "UP": 2, "PRIM": 3, "SECOND": 4}
MODULE_COMMANDS = {
    "start": "start the module (prestart, then PRIM/SECOND/ALONE as the cluster decides)",
    "stop": "stop the module (stop scripts, VIP released, poststop); no failover is triggered",
    "restart": "restart the application scripts locally, without failover",
    "stopstart": "stop then start the module (the peer may take over meanwhile)",
    "forcestop": "stop at once: running scripts are abandoned, stop scripts called with force",
    "swap": "swap roles: the primary becomes secondary and the secondary primary",
    "prim": "make this node primary (refused on a stale replica: see primforce)",
    "second": "make this node secondary",
    "primforce": "make this node primary even with a stale replica (data written since is lost)",
}


class CommandError(Exception):
    """A command that could not be done; one line for the user."""


def add_parsers(commands: Any) -> None:
    for name, text in MODULE_COMMANDS.items():
        p = commands.add_parser(name, help=text, description=text)
        _module_arg(p, required=True)
        _json_arg(p)
        if name in ("swap",):
            p.add_argument("mode", nargs="?", choices=["nosync"], help="swap without resynchronising")
        if name in ("prim", "second"):
            p.add_argument("mode", nargs="?", choices=["fullsync"], help="force a full resynchronisation")

    state = commands.add_parser("state", help="module states on this node", description="module states")
    _module_arg(state, required=False)
    state.add_argument("-v", dest="verbose", action="store_true", help="show resources")
    state.add_argument("-l", dest="local", action="store_true", help="this node only (the default)")
    state.add_argument("-q", dest="quiet", action="store_true", help="no output; exit code = state (0-4)")
    _json_arg(state)

    waitstate = commands.add_parser("waitstate", help="wait until a module reaches a state")
    _module_arg(waitstate, required=True)
    waitstate.add_argument("target", metavar="STATE", choices=sorted(STATE_EXIT_CODES))
    waitstate.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    waitstate.add_argument("--ready", action="store_true", help="also wait for the Ready sub-state")
    _json_arg(waitstate)

    get = commands.add_parser("get", help="read a resource (e.g. heartbeat.default, rfs.uptodate)")
    _module_arg(get, required=True)
    get.add_argument("-r", dest="resource", required=True)
    _json_arg(get)

    set_ = commands.add_parser("set", help="set a resource, as a custom checker does")
    _module_arg(set_, required=True)
    set_.add_argument("-r", dest="resource", required=True)
    set_.add_argument("-v", dest="value", required=True, choices=["up", "down"])
    set_.add_argument("-i", dest="ident", help="identity of the checker setting it")
    _json_arg(set_)

    log = commands.add_parser("log", help="the module log (decisions and events)")
    _module_arg(log, required=True)
    log.add_argument("-A", dest="all", action="store_true", help="the whole log, not only the last lines")
    _json_arg(log)

    snapshot = commands.add_parser(
        "snapshot", help="a zip of a module's configuration, logs and state for support (no secrets)"
    )
    _module_arg(snapshot, required=True)
    snapshot.add_argument("file", help="the zip file to write")

    cluster = commands.add_parser("cluster", help="cluster-wide configuration")
    cluster_cmds = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    genkey = cluster_cmds.add_parser("genkey", help="generate the cluster key (once; copy it to every node)")
    genkey.add_argument("file", nargs="?", default="/etc/safekit/cluster.key")
    genkey.add_argument("--force", action="store_true", help="replace an existing key")
    cluster_state = cluster_cmds.add_parser("state", help="states of every module on this node")
    _json_arg(cluster_state)


def _module_arg(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("-m", dest="module", required=required, metavar="AM", help="the application module")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def handles(command: str) -> bool:
    return command in MODULE_COMMANDS or command in (
        "state",
        "waitstate",
        "get",
        "set",
        "log",
        "cluster",
        "snapshot",
    )


def run(args: argparse.Namespace) -> int:
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "waitstate":
        return _waitstate(args)
    if args.command == "snapshot":
        return _snapshot(args)
    payload: dict[str, Any] = {"cmd": args.command}
    for key in ("module", "mode", "resource", "value", "ident", "verbose", "all"):
        value = getattr(args, key, None)
        if value not in (None, False):
            payload[key] = value
    if args.command == "state" and args.quiet:
        try:
            answer = _ask(payload)
        except CommandError:
            return STATE_UNKNOWN  # not WAIT's 1: a script must tell "no daemon" from "waiting"
    else:
        answer = _ask(payload)
    if getattr(args, "json", False):
        print(json.dumps(answer, indent=2, sort_keys=True))
    if args.command == "state":
        return _print_state(args, answer)
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    if not getattr(args, "json", False):
        _print_answer(args.command, answer)
    return 0


def _ask(payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    try:
        return control.request(payload, timeout=timeout)
    except control.ControlError as exc:
        raise CommandError(str(exc)) from exc


def _print_answer(command: str, answer: dict[str, Any]) -> None:
    if command == "log":
        for line in answer.get("lines", []):
            print(line)
    elif command == "get":
        print(answer.get("value"))
    elif answer.get("message"):
        print(answer["message"])


def _print_state(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    modules = answer.get("modules", [])
    if not args.quiet and not args.json:
        for mod in modules:
            print(f"{mod['name']:<16} {mod['state']:<7} ({mod['readiness']})  {mod.get('reason', '')}")
            if args.verbose:
                for res, value in sorted(mod.get("resources", {}).items()):
                    print(f"    {res:<32} {value}")
    if args.quiet and args.module and modules:
        return STATE_EXIT_CODES.get(modules[0]["state"], 0)  # SafeKit's `state -m AM -lq`
    return 0


def _waitstate(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        remaining = max(0.1, deadline - time.monotonic())
        answer = _ask({"cmd": "state", "module": args.module}, timeout=min(5.0, remaining))
        if not answer.get("ok") or not answer.get("modules"):
            raise CommandError(answer.get("error") or f"{args.module}: no such module")
        last = answer["modules"][0]
        if last["state"] == args.target and (not args.ready or last["readiness"] == "Ready"):
            if args.json:
                print(json.dumps(last, sort_keys=True))
            return 0
        time.sleep(0.1)
    raise CommandError(
        f"{args.module}: still {last.get('state')} ({last.get('readiness')}) after {args.timeout:g} s, "
        f"not {args.target}: {last.get('reason', '')}"
    )


def apply_config(args: argparse.Namespace) -> int:
    """`safekit config -m AM`."""
    if not args.module:
        raise CommandError("give the module (-m AM) to apply its configuration, or 'check FILE' to validate")
    answer = _ask({"cmd": "config", "module": args.module}, timeout=120)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    if not args.json:
        print(answer.get("message", ""))
    return 0


def _cluster(args: argparse.Namespace) -> int:
    if args.cluster_command == "genkey":
        path = Path(args.file)
        if path.exists() and not args.force:
            raise CommandError(f"{path} exists: a cluster has one key; use --force to replace it on purpose")
        key = clusterkey.generate_key()
        if path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        clusterkey.save_key(path, key)
        fingerprint = clusterkey.fingerprint(key)
        print(f"cluster key written to {path} (fingerprint {fingerprint}); copy it to every node")
        return 0
    answer = _ask({"cmd": "state"})
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    for mod in answer.get("modules", []):
        print(f"{mod['name']:<16} {mod['state']:<7} ({mod['readiness']})")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    """Configuration, logs and state of one module, as the support team needs them; never the key."""
    paths = Paths.from_env()
    module = args.module
    members: list[tuple[Path, str]] = [
        (paths.cluster_xml, "etc/cluster.xml"),
        (paths.daemon_log, "log/safekitd.log"),
        (paths.module_log(module), f"log/{module}.log"),
        (paths.user_log(module), f"log/{module}.userlog"),
    ]
    for base, prefix in ((paths.module_dir(module), "module"), (paths.module_var(module), "var")):
        if base.is_dir():
            members += [
                (f, f"{prefix}/{f.relative_to(base)}") for f in sorted(base.rglob("*")) if f.is_file()
            ]
    if not paths.module_dir(module).is_dir():
        raise CommandError(f"no module {module!r} in {paths.modules}")
    try:
        state = json.dumps(_ask({"cmd": "state", "module": module, "verbose": True}, timeout=5), indent=2)
    except CommandError as exc:
        state = json.dumps({"ok": False, "error": str(exc)})
    secret = paths.cluster_key.resolve()
    with zipfile.ZipFile(args.file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in members:
            if path.is_file() and path.resolve() != secret:
                archive.write(path, f"{module}-snapshot/{name}")
        archive.writestr(f"{module}-snapshot/state.json", state + "\n")
    print(f"snapshot of {module} written to {args.file} (the cluster key is never included)")
    return 0


def fail(message: str) -> int:
    print(f"safekit: {message}", file=sys.stderr)
    return 1
