"""`safekit report -m AM`: the failover reports of a module on this node - what was detected when,
which decision followed (the machine's reason names the rule or the witness), how long each step
took (virtual IP, replication, scripts) and how long until the module was settled again.

Reads the module's journal (daemon/module_journal.py) directly: works with or without safekitd.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from safekit import failover_report
from safekit.host.paths import Paths


def add_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="what happened at the module's last failovers, step by step, with durations",
        description="Each episode runs from the module leaving a settled state (Ready or STOP) to being "
        "settled again: what was detected, the decisions with their reasons, the virtual IP, "
        "replication and script steps with their durations. By default the last failover (or, "
        "with none, the last episode).",
    )
    report.add_argument("-m", dest="module", metavar="AM", required=True, help="the module")
    report.add_argument("--last", type=int, metavar="N", help="the last N episodes, failovers or not")
    report.add_argument("--json", action="store_true", help="print the episodes as JSON")


def journal_lines(path: Path) -> list[str]:
    """The journal's lines, its rotated part first."""
    lines: list[str] = []
    for part in (path.with_name(path.name + ".1"), path):
        try:
            lines += part.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            continue
    return lines


def run(args: argparse.Namespace, paths: Paths | None = None) -> int:
    paths = paths or Paths.from_env()
    records = failover_report.parse_lines(journal_lines(paths.module_journal(args.module)))
    found = failover_report.episodes(records)
    if args.last is not None:
        chosen = found[-args.last :] if args.last > 0 else []
    else:
        failovers = [e for e in found if e.failover]
        chosen = failovers[-1:] or found[-1:]
    if args.json:
        print(json.dumps([e.to_json() for e in chosen], indent=2))
        return 0
    if not chosen:
        print(f"no episode recorded for module {args.module} on this node", file=sys.stderr)
        return 1
    node = socket.gethostname()
    for episode in chosen:
        print("\n".join(failover_report.render(args.module, node, episode)))
    return 0
