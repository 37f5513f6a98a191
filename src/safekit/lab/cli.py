"""The `safekit lab ...` commands: argument parsing and output; the work is done by `Lab`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from safekit.lab.lab import Lab
from safekit.lab.topology import MAX_LANS, MAX_NODES, LabError


def add_parser(subparsers: Any) -> None:
    lab = subparsers.add_parser(
        "lab",
        help="a multi-host lab of network namespaces on this machine",
        description="Build lab hosts (network namespaces with their own sshd and private directories) "
        "on this machine, inject faults, and remove them. Needs root.",
    )
    commands = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--name", default="lab", help="lab name (default: lab)")
        return p

    up = command("up", "build the lab (an existing lab is left as it is)")
    up.add_argument("--nodes", type=int, default=2, help=f"nodes node1..nodeN (1-{MAX_NODES}, default 2)")
    up.add_argument(
        "--witness", action="store_true", help="add a witness host (the router split brain pings)"
    )
    up.add_argument("--client", action="store_true", help="add a client host (load and failover probes)")
    up.add_argument(
        "--ipv6",
        action="store_true",
        help="also give every host an IPv6 address (fd00:5afe:0:N::/64 per LAN)",
    )
    up.add_argument(
        "--lans", type=int, default=1, help=f"LANs, each its own bridge (1-{MAX_LANS}, default 1)"
    )
    up.add_argument("--json", action="store_true", help="print the result as JSON")

    down = command("down", "remove the lab and everything it created (also after a crash)")
    down.add_argument("--json", action="store_true", help="print the result as JSON")

    status = command("status", "show the hosts, their addresses, power, sshd and links")
    status.add_argument("--json", action="store_true", help="print the result as JSON")

    command("inventory", "print the path of the lab's Ansible inventory")

    ex = command("exec", "run a command on a lab host: safekit lab exec HOST -- CMD...")
    ex.add_argument("host")
    ex.add_argument("argv", nargs="*", metavar="-- CMD")

    ssh = command("ssh", "open an ssh session to a lab host (through its own sshd)")
    ssh.add_argument("host")
    ssh.add_argument("argv", nargs="*", metavar="-- CMD")

    kill = command("kill", "power cut: SIGKILL every process of a host and pull its cables")
    kill.add_argument("host")
    kill.add_argument(
        "--json", action="store_true", help="print the result as JSON (cut_at: when the cables were pulled)"
    )
    start = command("start", "boot a killed host again (fresh namespaces, cables in, sshd)")
    start.add_argument("host")
    cut = command("cut", "pull a host's cable on one LAN, or on all")
    cut.add_argument("host")
    cut.add_argument("--lan", help="the LAN (default: every LAN of the host)")
    isolate = command("isolate", "drop every frame between two hosts (other traffic flows)")
    isolate.add_argument("host_a")
    isolate.add_argument("host_b")
    drop = command(
        "drop", "drop the frames one host sends another (one way: a half-broken link), or a share of them"
    )
    drop.add_argument("sender")
    drop.add_argument("receiver")
    drop.add_argument(
        "--percent",
        type=int,
        default=100,
        help="share of frames dropped, each drawn alone (default 100)",
    )
    drop.add_argument("--both-ways", action="store_true", help="the receiver's frames to the sender too")
    heal = command("heal", "plug cables back and lift isolations and drops, of one host or of all")
    heal.add_argument("host", nargs="?")


def _command_argv(argv: list[str], what: str) -> list[str]:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise LabError(f"{what}: give the command after '--', e.g. 'safekit lab {what} node1 -- hostname'")
    return argv


def run(args: argparse.Namespace) -> int:
    lab = Lab(args.name)
    handler = _HANDLERS.get(args.lab_command)
    if handler is None:
        raise LabError(f"unknown lab command {args.lab_command!r}")
    return handler(lab, args)


def _up(lab: Lab, args: argparse.Namespace) -> int:
    plan, created = lab.up(
        nodes=args.nodes, lans=args.lans, witness=args.witness, client=args.client, ipv6=args.ipv6
    )
    if args.json:
        _print_json({"name": plan.name, "created": created, "inventory": str(lab.inventory_path)})
    elif created:
        hosts = ", ".join(f"{h.name} {h.address}" for h in plan.hosts)
        print(f"lab {plan.name} is up: {hosts}; inventory {lab.inventory_path}")
    else:
        print(f"lab {plan.name} is already up (inventory {lab.inventory_path}); nothing to do")
    return 0


def _down(lab: Lab, args: argparse.Namespace) -> int:
    removed = lab.down()
    if args.json:
        _print_json({"name": lab.name, "removed": removed})
    else:
        print(f"lab {lab.name} removed" if removed else f"lab {lab.name} does not exist; nothing to do")
    return 0


def _inventory(lab: Lab, args: argparse.Namespace) -> int:
    lab.require_state()
    print(lab.inventory_path)
    return 0


def _exec(lab: Lab, args: argparse.Namespace) -> int:
    argv = lab.exec_argv(args.host, _command_argv(args.argv, "exec"))
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process; the exit code is the command's


def _ssh(lab: Lab, args: argparse.Namespace) -> int:
    rest = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    argv = lab.ssh_argv(args.host, rest)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606


def _kill(lab: Lab, args: argparse.Namespace) -> int:
    cut = lab.power_cut(args.host)
    if args.json:
        _print_json(
            {
                "host": cut.host,
                "processes": cut.processes,
                "cut_at": round(cut.cut_at_wall, 6),
                "waited_s": round(cut.waited_s, 3),
            }
        )
        return 0
    millis = int(cut.cut_at_wall % 1 * 1000)
    at = time.strftime("%H:%M:%S", time.localtime(cut.cut_at_wall)) + f".{millis:03d}"
    print(f"{args.host}: power cut at {at} ({cut.processes} processes killed, cables pulled)")
    return 0


def _start(lab: Lab, args: argparse.Namespace) -> int:
    started = lab.start(args.host)
    print(f"{args.host}: booted" if started else f"{args.host}: already running; nothing to do")
    return 0


def _cut(lab: Lab, args: argparse.Namespace) -> int:
    lab.cut(args.host, args.lan)
    print(f"{args.host}: cable pulled on {args.lan or 'every LAN'}")
    return 0


def _isolate(lab: Lab, args: argparse.Namespace) -> int:
    lab.isolate(args.host_a, args.host_b)
    print(f"{args.host_a} and {args.host_b} can no longer reach each other")
    return 0


def _drop(lab: Lab, args: argparse.Namespace) -> int:
    lab.drop(args.sender, args.receiver, args.percent, both_ways=args.both_ways)
    arrow = "<->" if args.both_ways else "->"
    print(f"{args.sender} {arrow} {args.receiver}: {args.percent} % of the frames dropped")
    return 0


def _heal(lab: Lab, args: argparse.Namespace) -> int:
    lab.heal(args.host)
    print(f"{args.host or 'every host'}: cables plugged back, isolations and drops lifted")
    return 0


def _status(lab: Lab, args: argparse.Namespace) -> int:
    as_json = args.json
    state = lab.require_state()
    plan = state.plan()
    hosts = lab.status()
    if as_json:
        _print_json(
            {
                "name": plan.name,
                "lans": {lan.name: str(lan.network) for lan in plan.lans},
                "controller": str(plan.controller_address.ip),
                "inventory": str(lab.inventory_path),
                "isolations": sorted(sorted(p) for p in state.faults.isolations),
                "drops": [
                    {"sender": a, "receiver": b, "percent": share}
                    for (a, b), share in sorted(state.faults.drops.items())
                ],
                "hosts": [asdict(h) for h in hosts],
            }
        )
        return 0
    lans = ", ".join(f"{lan.name} {lan.network}" for lan in plan.lans)
    print(f"lab {plan.name}: LANs {lans}; controller {plan.controller_address.ip}")
    print(f"{'HOST':<9} {'ROLE':<8} {'ADDRESS':<15} {'POWER':<8} {'SSHD':<5} {'PROCS':>5}  LINKS")
    for h in hosts:
        links = " ".join(f"{lan}:{'up' if up else 'CUT'}" for lan, up in h.links.items())
        address = next(iter(h.addresses.values()))
        sshd = "up" if h.sshd else "down"
        print(f"{h.name:<9} {h.role:<8} {address:<15} {h.power:<8} {sshd:<5} {h.processes:>5}  {links}")
    for pair in sorted(sorted(p) for p in state.faults.isolations):
        print(f"isolated: {pair[0]} <-> {pair[1]}")
    for (sender, receiver), share in sorted(state.faults.drops.items()):
        print(f"dropping: {sender} -> {receiver}, {share} % of the frames")
    return 0


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


_HANDLERS: dict[str, Callable[[Lab, argparse.Namespace], int]] = {
    "up": _up,
    "down": _down,
    "status": _status,
    "inventory": _inventory,
    "exec": _exec,
    "ssh": _ssh,
    "kill": _kill,
    "start": _start,
    "cut": _cut,
    "isolate": _isolate,
    "drop": _drop,
    "heal": _heal,
}
