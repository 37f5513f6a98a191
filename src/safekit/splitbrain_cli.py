"""`safekit splitbrain list|remove`: what a node saved when it lost a split brain (docs/replication.md,
"When a split brain happened"). Works on this node's files under SAFEVAR, with or without safekitd.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from safekit.host.paths import Paths

if TYPE_CHECKING:
    from safekit.rfs import splitbrain


class SplitBrainError(Exception):
    """A request that cannot be done; one line for the user."""


def add_parser(commands: Any) -> None:
    sb = commands.add_parser(
        "splitbrain",
        help="files a node saved when it lost a split brain: list, remove",
        description="When both nodes were primary (no witness, or primforce) and the heartbeats come "
        "back, the node that steps down saves what it wrote since the split under "
        "SAFEVAR/modules/AM/splitbrain/TIME/ (with a manifest.json) before it resynchronises from the "
        "other. These commands show and remove those saves on this node.",
    )
    cmds = sb.add_subparsers(dest="splitbrain_command", metavar="COMMAND", required=True)
    lst = cmds.add_parser("list", help="the saves on this node (all modules, or -m AM)")
    lst.add_argument("-m", dest="module", metavar="AM", help="only this module")
    lst.add_argument("--json", action="store_true", help="print the saves and their manifests as JSON")
    rm = cmds.add_parser("remove", help="delete a save (TIME as listed) or all saves of a module")
    rm.add_argument("-m", dest="module", metavar="AM", required=True, help="the module")
    which = rm.add_mutually_exclusive_group(required=True)
    which.add_argument("time", nargs="?", help="the save's TIME, as 'list' shows it")
    which.add_argument("--all", action="store_true", help="every save of the module")
    rm.add_argument("--json", action="store_true", help="print what was removed as JSON")


def run(args: argparse.Namespace, paths: Paths | None = None) -> int:
    paths = paths or Paths.from_env()
    try:
        if args.splitbrain_command == "list":
            return _list(args, paths)
        return _remove(args, paths)
    except SplitBrainError as exc:
        print(f"safekit splitbrain: {exc}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace, paths: Paths) -> int:
    from safekit.rfs import splitbrain  # noqa: PLC0415 - loaded when a save is read, not for every safekit call

    found = splitbrain.saves(paths.var, args.module)
    if args.json:
        print(json.dumps([s.to_json() for s in found], indent=2))
        return 0
    if not found:
        where = f"module {args.module}" if args.module else "any module"
        print(f"no split-brain save for {where} on this node")
        return 0
    for saved in found:
        print(describe(saved))
    return 0


def describe(saved: splitbrain.Saved) -> str:
    """One save in a few lines: when, what, where."""
    from safekit.rfs import splitbrain  # noqa: PLC0415 - loaded when a save is read, not for every safekit call

    m = saved.manifest
    if m is None:
        why = "incomplete (no manifest: a save is running or was interrupted)"
        return f"{saved.module}  {saved.name}  {why}\n  {saved.path}"
    totals = m.get("totals", {})
    head = (
        f"{saved.module}  {saved.name}  {totals.get('files', 0)} files "
        f"({splitbrain.mib(int(totals.get('bytes', 0)))}) that {m.get('node')} changed since "
        f"{m.get('since') or 'the split'}; winner {m.get('winner')}"
    )
    lines = [head, f"  {saved.path}"]
    if totals.get("deleted"):
        lines.append(f"  {totals['deleted']} deleted on {m.get('node')} (listed in manifest.json)")
    if totals.get("not_saved"):
        size = splitbrain.mib(int(totals.get("not_saved_bytes", 0)))
        lines.append(f"  {totals['not_saved']} files ({size}) NOT saved: see manifest.json")
    resync = m.get("resync")
    if resync:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(resync.get("on_winner", {}).items()))
        lines.append(f"  after the resynchronisation: {counts or 'nothing to compare'}")
    return "\n".join(lines)


def _remove(args: argparse.Namespace, paths: Paths) -> int:
    from safekit.rfs import splitbrain  # noqa: PLC0415 - loaded when a save is read, not for every safekit call

    if args.all:
        names = [s.name for s in splitbrain.saves(paths.var, args.module)]
        if not names:
            raise SplitBrainError(f"module {args.module} has no split-brain save on this node")
    else:
        names = [args.time]
    removed = []
    for name in names:
        try:
            removed.append(splitbrain.remove(paths.var, args.module, name))
        except (ValueError, FileNotFoundError) as exc:
            raise SplitBrainError(str(exc)) from None
        except OSError as exc:
            raise SplitBrainError(f"could not remove {name}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps([{"module": s.module, "time": s.name, "path": str(s.path)} for s in removed]))
    else:
        for saved in removed:
            print(f"removed {saved.path}")
    return 0
