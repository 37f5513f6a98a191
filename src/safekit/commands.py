"""The engine commands of `safekit` (SafeKit's names and meaning), as a thin client of safekitd.

Each command becomes one request on the local control socket; the daemon decides and answers.
`state -lq` exit codes are SafeKit's: STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4. `--json` prints
the daemon's answer as it is. `cluster genkey|config|confinfo`, `config check`, `boot`,
`confinfo` and `module install|uninstall|list|templates|new` also work without a daemon (they work on files).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safekit import report_cli, splitbrain_cli
from safekit.host import control_client, persist
from safekit.host.module_packages import AdminError, boot_status, check_module_name, extract_safe, file_info
from safekit.host.paths import Paths
from safekit.membership import clusterkey
from safekit.vip.cli import add_owner_parser, run_owner

if TYPE_CHECKING:
    from safekit.config import ConfigError

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
NOT_KEPT = "Not kept across a restart of safekitd: the module starts again with it on."
SWITCHES = {
    "errd": (
        "turn the process monitor (<errd>) of a module on or off at run time",
        "off: processes are still watched and shown by 'state -v', but errd takes no action "
        "(no restart, stopstart or stop). " + NOT_KEPT,
    ),
    "checker": (
        "turn a module's checkers and <failover> rules on or off at run time",
        "off: tcp, ping, intf, ip, module and custom checkers still report in 'state -v', but take no "
        "action, and <failover> rules are not evaluated. Heartbeats and the split-brain witness are not "
        "checkers: they protect the data and always run. A checker still down when turned on acts at "
        "once. " + NOT_KEPT,
    ),
    "failover": (
        "turn automatic failover of a module on or off at run time",
        "off: when the primary is lost, the secondary does not take over; it goes to WAIT until the "
        "primary comes back or an operator runs 'safekit prim'. Not kept across a restart of safekitd: "
        'the module starts again with <service failover="..."> of its configuration.',
    ),
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

    _add_cluster_parsers(commands)
    _add_switch_parsers(commands)
    _add_module_parsers(commands)
    _add_node_parsers(commands)
    _add_farm_parsers(commands)
    _add_rfs_parsers(commands)
    splitbrain_cli.add_parser(commands)
    report_cli.add_parser(commands)
    _add_vip_parsers(commands)


def _add_cluster_parsers(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="cluster-wide configuration")
    cluster_cmds = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    genkey = cluster_cmds.add_parser("genkey", help="generate the cluster key (once; copy it to every node)")
    genkey.add_argument("file", nargs="?", default="/etc/safekit/cluster.key")
    genkey.add_argument("--force", action="store_true", help="replace an existing key")
    cluster_state = cluster_cmds.add_parser("state", help="states of every module on this node")
    _json_arg(cluster_state)
    cluster_confinfo = cluster_cmds.add_parser(
        "confinfo",
        help="sha256 of cluster.xml and the cluster key's fingerprint (never the key)",
        description="sha256 of cluster.xml and the fingerprint of the cluster key (never the key), "
        "and whether safekitd runs with them: compare them between nodes.",
    )
    _json_arg(cluster_confinfo)
    cluster_config = cluster_cmds.add_parser(
        "config",
        help="validate a cluster.xml and install it on this node (a daemon restart applies it)",
        description="Validate FILE as a cluster.xml and install it atomically as this node's "
        "cluster.xml. safekitd reads it when it starts: restart it to apply the file. Install the "
        "same file on every node.",
    )
    cluster_config.add_argument("file", metavar="FILE", help="the new cluster.xml")
    _json_arg(cluster_config)
    cluster_reload = cluster_cmds.add_parser(
        "reload",
        help="make the running safekitd use cluster.xml without a restart, where that is safe",
        description="safekitd takes the cluster.xml on disk live when no running module depends on "
        "what changed: heartbeat networks added, removed or readdressed (not the one carrying a "
        "running mirror's replication, not every network of a running module at once). Otherwise it "
        "refuses with the reason and keeps running the cluster it runs. SIGHUP does the same. Run it "
        "on every node (or apply the cluster from the console, which does).",
    )
    cluster_reload.add_argument(
        "--dry-run", action="store_true", help="only say what would be applied or why not"
    )
    _json_arg(cluster_reload)


def _add_switch_parsers(commands: Any) -> None:
    for name, (text, more) in SWITCHES.items():
        p = commands.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}. {more}")
        p.add_argument("value", choices=["on", "off"])
        _module_arg(p, required=True)
        _json_arg(p)

    boot = commands.add_parser(
        "boot",
        help="start a module with safekitd (on), or not (off); status says which",
        description="on/off: whether module AM starts when safekitd starts (boot.json of the module). "
        'status: on or off, and whether <service boot="on|off"> of the configuration overrides it '
        '(only boot="auto", the default, follows this setting).',
    )
    boot.add_argument("action", choices=["on", "off", "status"])
    _module_arg(boot, required=True)
    _json_arg(boot)


def _add_module_parsers(commands: Any) -> None:
    module = commands.add_parser("module", help="install, uninstall, list modules; their ports")
    module_cmds = module.add_subparsers(dest="module_command", metavar="COMMAND", required=True)
    mlist = module_cmds.add_parser("list", help="modules on this node and their state")
    _json_arg(mlist)
    install = module_cmds.add_parser(
        "install",
        help="install a module from a .safe package (a zip of the module directory)",
        description="Install module AM from FILE.safe, a zip of the module directory (conf/userconfig.xml, "
        "bin/...). The package is checked (no absolute path, '..' or link) and its configuration "
        "validated before anything is replaced; an installed module AM must be stopped. safekitd, if "
        "it runs, loads the module (stopped).",
    )
    _module_arg(install, required=True)
    install.add_argument("file", metavar="FILE.safe")
    _json_arg(install)
    uninstall = module_cmds.add_parser(
        "uninstall",
        help="remove a stopped module from this node",
        description="safekitd unloads module AM (it must be stopped), then its directory is removed. "
        "Its logs and its state (in SAFEVAR) are kept.",
    )
    _module_arg(uninstall, required=True)
    _json_arg(uninstall)
    getports = module_cmds.add_parser("getports", help="the module's heartbeat UDP port and the health port")
    _module_arg(getports, required=True)
    _json_arg(getports)
    templates = module_cmds.add_parser(
        "templates",
        help="the module templates shipped with safekit (mirror, farm, postgresql, ...)",
        description="List the module templates and their site values (docs/modules.md).",
    )
    templates.add_argument("name", nargs="?", metavar="TEMPLATE", help="show this template's site values")
    _json_arg(templates)
    new = module_cmds.add_parser(
        "new",
        help="write a module package from a template and site values",
        description="Write module NAME from template T with the site values given by --set KEY=VALUE "
        "(safekit module templates T lists them). The values are checked and the userconfig.xml "
        "validated before anything is written. The package is NAME.safe (install it with 'safekit "
        "module install -m NAME NAME.safe' on each node), or a directory with --output DIR/.",
    )
    new.add_argument("name", metavar="NAME", help="the module's name")
    new.add_argument("--template", "-t", required=True, metavar="T", help="the template")
    new.add_argument(
        "--set",
        dest="values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a site value (repeat for each); keys are case-insensitive",
    )
    new.add_argument(
        "--values",
        dest="values_file",
        metavar="FILE",
        help="site values from a YAML or JSON mapping (KEY: VALUE), '-' for stdin; --set wins over it",
    )
    new.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="where to write: FILE.safe (default ./NAME.safe), an existing directory (DIR/NAME.safe), "
        "a path ending in '/' (the module directory, not zipped), or '-' (the files as JSON on stdout)",
    )
    new.add_argument("--force", action="store_true", help="replace an existing FILE.safe")
    _json_arg(new)

    confinfo = commands.add_parser(
        "confinfo",
        help="a module's configuration file: sha256, modification, whether safekitd runs with it",
        description="Path, sha256 and last modification of userconfig.xml of module AM, and whether "
        "the configuration safekitd loaded differs from the file (then 'safekit config -m AM' applies it).",
    )
    _module_arg(confinfo, required=True)
    _json_arg(confinfo)


def _add_node_parsers(commands: Any) -> None:
    for name, text in (
        ("waitstart", "start a module and wait until PRIM, SECOND or ALONE (Ready), or WAIT"),
        ("waitstop", "stop a module and wait until it is STOP"),
    ):
        p = commands.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.")
        _module_arg(p, required=True)
        p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
        _json_arg(p)

    shutdown = commands.add_parser(
        "shutdown",
        help="stop every module, then safekitd",
        description="Stop every module on this node (stop scripts, virtual IPs released), then safekitd "
        "exits; waits until it is gone. Under systemd, 'systemctl stop safekitd' does the same.",
    )
    shutdown.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    _json_arg(shutdown)


def _module_arg(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("-m", dest="module", required=required, metavar="AM", help="the application module")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def handles(command: str) -> bool:
    return (
        command in MODULE_COMMANDS
        or command in SWITCHES
        or command in _HANDLERS
        or command
        in (
            "state",
            "get",
            "set",
            "log",
        )
    )


def run(args: argparse.Namespace) -> int:
    handler = _HANDLERS.get(args.command)
    if handler is not None:
        try:
            return handler(args)
        except AdminError as exc:
            raise CommandError(str(exc)) from exc
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


Transport = Callable[[dict[str, Any], float], dict[str, Any]]
_transport: Transport | None = None
"""When set (`safekit -H`), requests go there (another node's API) instead of the control socket."""


@contextlib.contextmanager
def use_transport(transport: Transport) -> Iterator[None]:
    global _transport  # noqa: PLW0603 - one CLI invocation, one target at a time
    previous, _transport = _transport, transport
    try:
        yield
    finally:
        _transport = previous


def _ask(payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    if _transport is not None:
        try:
            return _transport(payload, timeout)
        except Exception as exc:  # the remote client's errors are one line for the user
            raise CommandError(str(exc)) from exc
    try:
        return control_client.request(payload, timeout=timeout)
    except control_client.ControlError as exc:
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
                for line in verbose_lines(mod):
                    print(line)
    if args.quiet and args.module and modules:
        return STATE_EXIT_CODES.get(modules[0]["state"], 0)  # SafeKit's `state -m AM -lq`
    return 0


def verbose_lines(mod: dict[str, Any]) -> list[str]:
    """What `safekit state -v` prints under a module's line: its resources, the replication (role,
    engine; lag, ack latency and resynchronisation when the process reports them), the split-brain
    witness as this node sees it, the controls and a farm's groups. A figure the daemon does not
    report is left out, never shown as 0."""
    lines = [f"    {res:<32} {value}" for res, value in sorted(mod.get("resources", {}).items())]
    replication = mod.get("replication")
    if replication:  # a mirror module's replication process: its role and engine
        lines.append(f"    replication {replication.get('role')} ({replication.get('engine')} engine)")
        lines.extend(f"    replication {line}" for line in _replication_figures(replication))
    witness = mod.get("witness")
    if witness:
        lines.extend(_witness_lines(witness))
    controls = mod.get("controls")
    if controls:  # `safekit errd|checker|failover on|off`
        lines.append("    " + ", ".join(f"{name} {value}" for name, value in sorted(controls.items())))
    for group, share in sorted((mod.get("groups") or {}).items()):  # a farm's groups
        pending = share.get("pending_buckets", 0)
        later = f", {pending} more after the handover delay" if pending else ""
        lines.append(f"    group {group}: {share.get('buckets', 0)} buckets served here{later}")
    return lines


def _replication_figures(replication: dict[str, Any]) -> list[str]:
    """The lag, ack latency and resynchronisation lines of a replication view (rfs_figures.py)."""
    lines = []
    parts = []
    lag = replication.get("lag_seconds")
    if isinstance(lag, (int, float)):
        parts.append(f"lag {duration(lag)}")
    latency = replication.get("ack_latency")
    if isinstance(latency, dict):
        window = duration(latency.get("window") or 20)
        if latency.get("p50") is None or latency.get("p99") is None:
            parts.append(f"ack latency: no write acknowledged in the last {window}")
        else:
            parts.append(
                f"ack latency p50 {duration(latency['p50'])} p99 {duration(latency['p99'])} "
                f"(last {window}, {latency.get('count', 0)} writes)"
            )
    if parts:
        lines.append(", ".join(parts))
    resync = replication.get("resync")
    if isinstance(resync, dict):
        text = f"resync {resync.get('mode') or 'running'}"
        if resync.get("percent") is not None:
            text += f" {resync['percent']:.0f}%"
        details = []
        if resync.get("done") is not None and resync.get("total") is not None:
            details.append(f"{resync['done']}/{resync['total']} objects")
        if resync.get("bytes") is not None:
            details.append(f"{size(resync['bytes'])} sent")
        if resync.get("rate") is not None:
            details.append(f"{size(resync['rate'])}/s")
        if details:
            text += f" ({', '.join(details)})"
        remaining = resync.get("remaining")
        text += ", time left unknown" if remaining is None else f", about {duration(remaining)} left"
        lines.append(text)
    return lines


def _witness_lines(witness: dict[str, Any]) -> list[str]:
    """The witness as this node sees it (witness_probes.WitnessView.view): overall, then each
    address with its round trip, failures and last error."""
    reachable = witness.get("reachable")
    overall = {True: "reachable", False: "unreachable", None: "not probed yet"}[reachable]
    head = f"    witness ({witness.get('mode')}) {overall}"
    if reachable and witness.get("rtt") is not None:
        head += f", round trip {duration(witness['rtt'])}"
    lines = [head]
    for target in witness.get("targets") or []:
        lines.append(f"      {target.get('address')}: {', '.join(_witness_target(target))}")
    return lines


def _witness_target(target: dict[str, Any]) -> list[str]:
    """One witness address: reachable with its round trip, or unreachable with why and since when;
    the failed probes and the last error either way (a flapping witness shows as reachable with
    a recent error)."""
    error = None
    if target.get("last_error"):
        ago = "" if target.get("failed_age") is None else f" {_ago(target['failed_age'])}"
        error = f"last error: {target['last_error']}{ago}"
    n = target.get("failures") or 0
    failures = f"{n} probe{'s' if n > 1 else ''} failed" if n else None
    reachable = target.get("reachable")
    if reachable is None:
        return ["not probed yet"]
    if reachable:
        parts = ["reachable"]
        if target.get("rtt") is not None:
            parts.append(f"round trip {duration(target['rtt'])}")
        return [*parts, *(x for x in (failures, error) if x)]
    answered = target.get("answered_age")
    since = "never answered" if answered is None else f"last answer {_ago(answered)}"
    return ["unreachable", *(x for x in (error, since, failures) if x)]


def _ago(age: float) -> str:
    """How long ago, from an age in seconds (the daemon rounds them to 0.1 s)."""
    return f"{age:.1f} s ago" if age < 1 else f"{duration(age)} ago"


def duration(seconds: float) -> str:
    """A duration as an operator reads it: 0.25 ms, 175 ms, 2.5 s, 42 s, 3 min 20 s, 1 h 5 min."""
    if seconds <= 0:
        return "0 s"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


def size(count: float) -> str:
    """Bytes with a binary unit: 512 B, 1.5 KiB, 12.3 MiB, 2.0 GiB."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


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
        (paths.module_journal(module), f"log/{module}.journal"),  # `safekit report` from the zip
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


# ---------------------------------------------------------------------- waitstart, waitstop, shutdown


def _print_result(args: argparse.Namespace, data: dict[str, Any], text: str | None) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif text:
        print(text)


def _module_line(mod: dict[str, Any]) -> str:
    return f"{mod['name']:<16} {mod['state']:<7} ({mod['readiness']})  {mod.get('reason', '')}"


def _started(mod: dict[str, Any]) -> bool:
    """Where a start settles: a role, Ready; or WAIT, which needs the peer or an operator."""
    if mod["state"] in ("PRIM", "SECOND", "ALONE", "UP"):
        return bool(mod["readiness"] == "Ready")
    return bool(mod["state"] == "WAIT" and mod["readiness"] == "NotReady")


def _stopped(mod: dict[str, Any]) -> bool:
    return bool(mod["state"] == "STOP" and mod["readiness"] == "NotReady")


def _waitstart(args: argparse.Namespace) -> int:
    return _command_and_wait(args, "start", _started, failed=_stopped)


def _waitstop(args: argparse.Namespace) -> int:
    return _command_and_wait(args, "stop", _stopped, failed=None)


def _command_and_wait(
    args: argparse.Namespace,
    command: str,
    done: Callable[[dict[str, Any]], bool],
    failed: Callable[[dict[str, Any]], bool] | None,
) -> int:
    """Send `command`, then poll the state until `done` (or `failed`: the command did not hold)."""
    answer = _ask({"cmd": command, "module": args.module})
    if not answer.get("ok"):
        error = str(answer.get("error") or "refused")
        if "already" not in error:  # already started / stopping / stopped: just wait
            raise CommandError(error)
    deadline = time.monotonic() + args.timeout
    last: dict[str, Any] = {}
    while True:
        remaining = max(0.1, deadline - time.monotonic())
        state = _ask({"cmd": "state", "module": args.module}, timeout=min(5.0, remaining))
        if not state.get("ok") or not state.get("modules"):
            raise CommandError(state.get("error") or f"{args.module}: no such module")
        last = state["modules"][0]
        if done(last):
            _print_result(args, last, _module_line(last))
            return 0
        if failed is not None and failed(last):
            raise CommandError(f"{args.module}: {command} failed: STOP: {last.get('reason', '')}")
        if time.monotonic() >= deadline:
            raise CommandError(
                f"{args.module}: still {last.get('state')} ({last.get('readiness')}) after "
                f"{args.timeout:g} s: {last.get('reason', '')}"
            )
        time.sleep(0.1)


def _shutdown(args: argparse.Namespace) -> int:
    answer = _ask({"cmd": "shutdown"})
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    if not args.json:
        print(answer.get("message", ""))
    # safekitd removes its control socket last, once every module is stopped.
    path = control_client.socket_path()
    deadline = time.monotonic() + args.timeout
    while path.exists():
        if time.monotonic() >= deadline:
            raise CommandError(f"safekitd still runs {args.timeout:g} s after shutdown (see its log)")
        time.sleep(0.1)
    _print_result(args, {**answer, "stopped": True}, "safekitd stopped")
    return 0


# ---------------------------------------------------------------------- boot, confinfo


def _module_config_file(paths: Paths, module: str) -> Path:
    check_module_name(module)
    path = paths.module_dir(module) / "conf" / "userconfig.xml"
    if not path.is_file():
        raise CommandError(f"no module {module!r}: no {path}")
    return path


def _config_error(exc: ConfigError) -> str:
    more = f" (and {len(exc.errors) - 1} more: safekit config check)" if len(exc.errors) > 1 else ""
    return f"{exc.errors[0] if exc.errors else exc}{more}"


def _boot(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    config_file = _module_config_file(paths, args.module)
    if args.action in ("on", "off"):
        persist.write_json(paths.boot_file(args.module), {"start_at_boot": args.action == "on"})
    try:
        saved = bool((persist.read_json(paths.boot_file(args.module)) or {}).get("start_at_boot"))
    except (ValueError, AttributeError):
        saved = False  # what safekitd does with an unreadable boot.json
    from safekit.config import ConfigError, load_module  # noqa: PLC0415 - only commands reading a configuration

    try:
        config_boot = load_module(config_file).config.service.boot
    except ConfigError as exc:
        raise CommandError(f"{args.module}: configuration not valid: {_config_error(exc)}") from exc
    status = boot_status(config_boot, saved)
    _print_result(args, {"ok": True, **status.as_dict(args.module)}, status.describe(args.module))
    return 0


def _confinfo(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    info: dict[str, Any] = {
        "ok": True,
        "module": args.module,
        **file_info(_module_config_file(paths, args.module)),
    }
    try:
        answer = control_client.request({"cmd": "confinfo", "module": args.module}, timeout=10)
    except control_client.ControlError as exc:
        answer = {"ok": False, "error": str(exc)}
    loaded = answer.get("loaded_sha256") if answer.get("ok") else None
    info["loaded_sha256"] = loaded
    info["differs"] = None if loaded is None else loaded != info["sha256"]
    if loaded is None:
        loaded_text = f"not loaded ({answer.get('error') or 'unknown'})"
    elif info["differs"]:
        loaded_text = f"differs from the file: safekit config -m {args.module} applies it (module stopped)"
    else:
        loaded_text = "same as the file"
    text = (
        f"{args.module}: {info['path']}\n  sha256    {info['sha256']}\n  modified  {info['modified']}\n"
        f"  loaded    {loaded_text}"
    )
    _print_result(args, info, text)
    return 0


def _cluster_confinfo(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    if not paths.cluster_xml.is_file():
        raise CommandError(f"no {paths.cluster_xml}")
    info: dict[str, Any] = {"ok": True, **file_info(paths.cluster_xml)}
    try:
        info["key_fingerprint"] = clusterkey.fingerprint(clusterkey.load_key(paths.cluster_key))
    except clusterkey.ClusterKeyError as exc:
        info["key_fingerprint"] = None
        info["key_error"] = str(exc)
    try:
        answer = control_client.request({"cmd": "cluster_confinfo"}, timeout=10)
    except control_client.ControlError as exc:
        answer = {"ok": False, "error": str(exc)}
    running = answer.get("ok") is True
    info["loaded_sha256"] = answer.get("cluster_sha256") if running else None
    info["loaded_key_fingerprint"] = answer.get("key_fingerprint") if running else None
    info["differs"] = None if not running else info["loaded_sha256"] != info["sha256"]
    lines = [
        f"cluster.xml  {info['path']}",
        f"  sha256     {info['sha256']}",
        f"  modified   {info['modified']}",
        f"  key        {info['key_fingerprint'] or info.get('key_error')} (fingerprint)",
    ]
    if not running:
        lines.append(f"  safekitd   {answer.get('error')}")
    else:
        same = "differs from the file: restart safekitd to apply it" if info["differs"] else "same file"
        key_same = info["loaded_key_fingerprint"] == info["key_fingerprint"]
        lines.append(f"  safekitd   runs with the {same}{'' if key_same else ', and another key'}")
    _print_result(args, info, "\n".join(lines))
    return 0


def _cluster_config(args: argparse.Namespace) -> int:
    from safekit.config import ConfigError, load_cluster  # noqa: PLC0415 - only commands reading a configuration

    paths = Paths.from_env()
    source = Path(args.file)
    try:
        data = source.read_bytes()
        config = load_cluster(source)
    except OSError as exc:
        raise CommandError(f"{source}: {exc.strerror}") from exc
    except ConfigError as exc:
        raise CommandError(f"not installed: {_config_error(exc)}") from exc
    target = paths.cluster_xml
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    persist.write_bytes(target, data, mode=mode)
    info = {"ok": True, **file_info(target), "nodes": list(config.node_names)}
    _print_result(
        args,
        info,
        f"{source} installed as {target} (sha256 {info['sha256'][:16]}...): restart safekitd to apply it, "
        "or 'safekit cluster reload' applies it live where it can; install the same file on every node",
    )
    return 0


def _cluster_reload(args: argparse.Namespace) -> int:
    answer = _ask({"cmd": "cluster_reload", "dry_run": bool(args.dry_run)})
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif answer.get("ok"):
        print(answer.get("message", ""))
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    return 0


# ---------------------------------------------------------------------- module list|install|...


def _module(args: argparse.Namespace) -> int:
    action = {
        "list": _module_list,
        "install": _module_install,
        "uninstall": _module_uninstall,
        "getports": _module_getports,
        "templates": _module_templates,
        "new": _module_new,
    }[args.module_command]
    return action(args)


def _module_list(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    on_disk = (
        sorted(
            d.name
            for d in paths.modules.iterdir()
            if not d.name.startswith(".") and (d / "conf" / "userconfig.xml").is_file()
        )
        if paths.modules.is_dir()
        else []
    )
    try:
        answer = _ask({"cmd": "module_list"}, timeout=10)
        daemon_error = None if answer.get("ok") else str(answer.get("error"))
    except CommandError as exc:
        answer, daemon_error = {}, str(exc)
    known = {m["name"]: m for m in answer.get("modules", [])}
    modules = []
    for name in sorted(set(on_disk) | set(known)):
        mod = known.get(name)
        if mod is None:
            note = "not loaded" + (f" ({daemon_error})" if daemon_error else f": safekit config -m {name}")
            mod = {"name": name, "loaded": "no", "state": "", "error": note}
        mod = {**mod, "installed": name in on_disk}
        if not mod["installed"]:
            mod["error"] = (mod.get("error") or "") + " (its directory is gone)"
        modules.append(mod)
    data = {"ok": True, "modules": modules, "daemon": daemon_error is None}
    lines = [f"{m['name']:<16} {m.get('state') or '-':<7} {m.get('error', '')}".rstrip() for m in modules]
    _print_result(args, data, "\n".join(lines) if lines else f"no module in {paths.modules}")
    return 0


def _daemon_module(name: str) -> dict[str, Any] | None:
    """The module as safekitd runs it; None when it does not run it (or safekitd is not running)."""
    try:
        answer = control_client.request({"cmd": "state", "module": name}, timeout=10)
    except control_client.ControlError:
        return None
    modules = answer.get("modules") if answer.get("ok") else None
    return modules[0] if modules else None


def _module_install(args: argparse.Namespace) -> int:
    from safekit.config import ConfigError, check_file  # noqa: PLC0415 - only commands reading a configuration

    paths = Paths.from_env()
    name = check_module_name(args.module)
    archive = Path(args.file)
    if not archive.is_file():
        raise CommandError(f"{archive}: no such file")
    target = paths.module_dir(name)
    _refuse_running(name, "installed over")
    paths.modules.mkdir(parents=True, exist_ok=True)
    # A dot directory beside the modules (same file system: the final move is a rename; safekitd
    # never loads a dot directory).
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.install-", dir=paths.modules))
    old = paths.modules / f".{name}.old-{os.getpid()}"
    try:
        root = extract_safe(archive, staging)
        staged = str(root / "conf" / "userconfig.xml")
        shown = f"{archive}:conf/userconfig.xml"  # not the staging directory, gone when the user reads it
        try:
            for warning in check_file(staged):
                print(f"warning: {str(warning).replace(staged, shown)}", file=sys.stderr)
        except ConfigError as exc:
            raise CommandError(f"not installed: {_config_error(exc).replace(staged, shown)}") from exc
        _refuse_running(name, "installed over")  # it could have been started meanwhile
        _swap_into_place(root, target, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    target.chmod(0o755)
    message = f"module {name} installed in {target}"
    loaded = False
    try:
        answer = control_client.request({"cmd": "config", "module": name}, timeout=120)
    except control_client.ControlError:
        message += "; safekitd is not running: it loads the module when it starts"
    else:
        if not answer.get("ok"):
            raise CommandError(f"{message}, but safekitd did not load it: {answer.get('error')}")
        loaded = True
        message += f"; safekitd loaded it (stopped: safekit start -m {name})"
    _print_result(args, {"ok": True, "module": name, "path": str(target), "loaded": loaded}, message)
    return 0


def _swap_into_place(new: Path, target: Path, old: Path) -> None:
    """Rename `new` to `target`; an older `target` is kept aside until then, and put back on failure."""
    replacing = target.exists()
    if replacing:
        target.rename(old)
    try:
        new.rename(target)
    except OSError as exc:
        if replacing:
            old.rename(target)
        raise CommandError(f"cannot move the module into {target}: {exc.strerror}") from exc
    if replacing:
        shutil.rmtree(old)


def _refuse_running(name: str, what: str) -> None:
    mod = _daemon_module(name)
    if mod is not None and not _stopped(mod):
        raise CommandError(
            f"{name} is {mod['state']} ({mod['readiness']}): only a stopped module is {what} "
            f"(safekit stop -m {name} first)"
        )


def _module_uninstall(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    name = check_module_name(args.module)
    target = paths.module_dir(name)
    installed = target.is_dir()
    try:
        answer = control_client.request({"cmd": "module_unload", "module": name}, timeout=120)
    except control_client.ControlError:
        answer = {"ok": True, "unloaded": False}  # no daemon: nothing runs the module
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    if not installed and not answer.get("unloaded"):
        raise CommandError(f"no module {name!r}: no {target}")
    if installed:
        shutil.rmtree(target)
    message = f"module {name} uninstalled ({target} removed; its logs and {paths.module_var(name)} are kept)"
    _print_result(args, {"ok": True, "module": name, "path": str(target)}, message)
    return 0


def _module_getports(args: argparse.Namespace) -> int:
    answer = _ask({"cmd": "getports", "module": args.module})
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    lans = ", ".join(f"{lan} {addrs}" for lan, addrs in sorted(answer.get("lans", {}).items()))
    text = (
        f"{args.module}: heartbeat UDP port {answer['heartbeat_port']} ({lans})\n"
        f"{args.module}: health and metrics TCP port {answer['health_port']}"
    )
    _print_result(args, answer, text)
    return 0


def _module_templates(args: argparse.Namespace) -> int:
    from safekit import templates  # noqa: PLC0415 - only the template commands
    from safekit.module_templates import TemplateError, describe  # noqa: PLC0415 - only the template commands

    try:
        found = [templates.get(args.name)] if args.name else list(templates.library().values())
    except TemplateError as exc:
        raise CommandError(str(exc)) from exc
    if args.name:
        _print_result(args, {"ok": True, "templates": [t.as_dict() for t in found]}, describe(found[0]))
        return 0
    text = "\n".join(f"{t.name:<12} {t.mode:<7} {t.summary}" for t in found)
    _print_result(args, {"ok": True, "templates": [t.as_dict() for t in found]}, text)
    return 0


def _module_new(args: argparse.Namespace) -> int:
    from safekit import templates  # noqa: PLC0415 - only the template commands
    from safekit.config import ConfigError, parse_module  # noqa: PLC0415 - only commands reading a configuration
    from safekit.module_templates import USERCONFIG, TemplateError, parse_assignments, render  # noqa: PLC0415 - only the template commands

    name = check_module_name(args.name)
    try:
        template = templates.get(args.template)
        given = _values_file(args.values_file) if args.values_file else {}
        given.update(parse_assignments(args.values))
        package = render(template, name, given)
    except TemplateError as exc:
        raise CommandError(f"{name} not written: {exc}") from exc
    userconfig = package[USERCONFIG].content
    try:
        # Rendered values only: the template defines every macro it uses, the environment plays no part.
        for warning in parse_module(userconfig, f"{name}:{USERCONFIG}", env={}).warnings:
            print(f"warning: {warning}", file=sys.stderr)
    except ConfigError as exc:
        raise CommandError(f"{name} not written: template {template.name}: {_config_error(exc)}") from exc
    output = args.output or f"{name}.safe"
    if output == "-":
        files = {path: item.content.decode() for path, item in package.items()}
        print(
            json.dumps(
                {
                    "ok": True,
                    "module": name,
                    "template": template.name,
                    "mode": template.mode,
                    "files": files,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    target = Path(output)
    try:
        if output.endswith("/"):
            templates.write_directory(package, target)
            how = f"module directory {target} written (zip its content into a .safe to install it)"
        else:
            if target.is_dir():
                target = target / f"{name}.safe"
            if target.exists() and not args.force:
                raise CommandError(f"{target} exists (--force replaces it)")
            templates.write_safe(package, target)
            how = f"{target} written; install it on each node: safekit module install -m {name} {target}"
    except TemplateError as exc:
        raise CommandError(f"{name} not written: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"{name} not written: {target}: {exc.strerror or exc}") from exc
    data = {"ok": True, "module": name, "template": template.name, "mode": template.mode, "path": str(target)}
    _print_result(args, data, f"{name} ({template.name} template, {template.mode}): {how}")
    return 0


def _values_file(name: str) -> dict[str, str]:
    import yaml  # noqa: PLC0415 - only --values reads YAML

    from safekit.module_templates import TemplateError  # noqa: PLC0415 - only the template commands

    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"--values {name}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise TemplateError(f"--values {name}: not YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"--values {name}: a mapping KEY: VALUE is expected")
    return {str(k).lower(): "" if v is None else str(v) for k, v in data.items()}


def _cluster_command(args: argparse.Namespace) -> int:
    if args.cluster_command == "confinfo":
        return _cluster_confinfo(args)
    if args.cluster_command == "config":
        return _cluster_config(args)
    if args.cluster_command == "reload":
        return _cluster_reload(args)
    return _cluster(args)


def _add_farm_parsers(commands: Any) -> None:
    farm = commands.add_parser("farm", help="farm modules: the bucket map")
    farm_cmds = farm.add_subparsers(dest="farm_command", metavar="COMMAND", required=True)
    fmap = farm_cmds.add_parser(
        "map",
        help="which node serves which of the 256 buckets (as this node sees the farm)",
        description="Bucket ownership of a farm module: each node's share and its buckets, as this "
        "node computes them from the balancing set it sees (every node computes the same map).",
    )
    _module_arg(fmap, required=True)
    _json_arg(fmap)


def _farm(args: argparse.Namespace) -> int:
    answer = _ask({"cmd": "farm_map", "module": args.module})
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    farm_map: dict[str, Any] = answer["map"]
    if args.json:
        print(json.dumps(farm_map, indent=2, sort_keys=True))
        return 0
    print(
        f"{farm_map['module']} on {farm_map['node']}: {farm_map['state']} ({farm_map['readiness']}), "
        f"balancing set: {', '.join(farm_map['members']) or 'empty'}"
    )
    groups: list[dict[str, Any]] = farm_map.get("groups") or [farm_map]
    for group in groups:
        indent = "  "
        if len(groups) > 1 or "name" in group:
            rules = ", ".join(group.get("rules", [])) or "no rule"
            every = " (every farm node, power 1)" if group.get("every_node") else ""
            print(f"  group {group.get('name', '?')}{every}: {rules}")
            indent = "    "
        shares: dict[str, int] = group["shares"]
        for node, power in group["powers"].items():
            count = shares.get(node, 0)
            runs = group["ranges"].get(node, [])
            text = " ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "-"
            percent = 100 * count / group["buckets"]
            print(f"{indent}{node:<16} power {power:<3} {count:>3} buckets ({percent:5.1f}%)  {text}")
        if group.get("pending_here"):
            print(f"{indent}({len(group['pending_here'])} buckets move here after the handover delay)")
    return 0


# ---------------------------------------------------------------------- rfs


def _add_rfs_parsers(commands: Any) -> None:
    rfs = commands.add_parser("rfs", help="replication of a mirror module's directories")
    rfs_cmds = rfs.add_subparsers(dest="rfs_command", metavar="COMMAND", required=True)
    verify = rfs_cmds.add_parser(
        "verify",
        help="compare the primary's and the secondary's copies and list the differences",
        description="Run on the primary. Both copies are read whole and compared block by block at "
        "one point of the operation order (writes pause while the primary reads its own copy). "
        "Exit code 0: identical; 1: differences (listed).",
    )
    _module_arg(verify, required=True)
    _json_arg(verify)
    verify.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")


def _rfs(args: argparse.Namespace) -> int:
    answer = _ask({"cmd": "rfs_verify", "module": args.module, "timeout": args.timeout}, args.timeout + 10)
    if not answer.get("ok"):
        raise CommandError(answer.get("error") or "refused")
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        print(answer.get("message", ""))
        for line in answer.get("differences", []):
            print(f"  {line}")
    return 0 if answer.get("identical") else 1


# ---------------------------------------------------------------------- vip check


def _add_vip_parsers(commands: Any) -> None:
    vip = commands.add_parser("vip", help="virtual IPs of a module: check their provider configuration")
    vip_cmds = vip.add_subparsers(dest="vip_command", metavar="COMMAND", required=True)
    check = vip_cmds.add_parser(
        "check",
        help="validate the VIP providers' configuration and cloud permissions (dry run; changes nothing)",
        description="For each <virtual_addr> of module AM: load its provider (options checked), and for a "
        "cloud provider read its identity and resources and test its permissions (dry-run calls where the "
        "cloud's API has them). Exit code 1 when anything is wrong.",
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", dest="module", metavar="AM", help="the installed module")
    source.add_argument("--file", help="a userconfig.xml or module directory instead of an installed module")
    check.add_argument("--timeout", type=float, default=20.0, help="seconds per address (default 20)")
    _json_arg(check)
    add_owner_parser(vip_cmds)


def _vip(args: argparse.Namespace) -> int:
    if args.vip_command == "owner":
        return run_owner(args)
    from safekit.config import ConfigError, load_module  # noqa: PLC0415 - only commands reading a configuration
    from safekit.vip.cloud.check import VipTarget, check_vips  # noqa: PLC0415 - the providers' clients

    config_file = args.file or _module_config_file(Paths.from_env(), args.module)
    try:
        config = load_module(config_file).config
    except ConfigError as exc:
        raise CommandError(f"{config_file}: configuration not valid: {_config_error(exc)}") from exc
    targets = [
        VipTarget(a.addr, a.prefix_length, i.name, a.provider, dict(a.options), a.line)
        for i in (config.vip.interfaces if config.vip else ())
        for a in i.addresses
    ]
    if not targets:
        raise CommandError(f"{config_file}: no <vip> address to check")
    results = asyncio.run(check_vips(targets, args.timeout))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            mark = "ok" if result.ok else "FAILED"
            print(f"{result.target.address} ({result.target.provider}, line {result.target.line}): {mark}")
            for line in result.lines:
                print(f"  {line}")
    return 0 if all(r.ok for r in results) else 1


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "farm": _farm,
    "rfs": _rfs,
    "vip": _vip,
    "cluster": _cluster_command,
    "waitstate": _waitstate,
    "snapshot": _snapshot,
    "waitstart": _waitstart,
    "waitstop": _waitstop,
    "shutdown": _shutdown,
    "boot": _boot,
    "confinfo": _confinfo,
    "module": _module,
    "splitbrain": splitbrain_cli.run,
    "report": report_cli.run,
}
