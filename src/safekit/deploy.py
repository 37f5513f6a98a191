"""`safekit deploy mirror|farm -i INVENTORY`: run the deployment playbooks through ansible-runner.

Owns the command line of `safekit deploy`, finding the playbooks of a checkout, turning runner
events into a progress display (`apply_event`, pure, so it is tested without Ansible) and the
final per-host summary. The work itself is the playbooks'; nothing here talks to a node.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import safekit

EXIT_ERROR = 1
PLAYBOOKS = {"mirror": "deploy-mirror.yml", "farm": "deploy-farm.yml"}
# One failure message is shown on one line, cut to this length; the whole result is in the artifacts.
MESSAGE_MAX = 300
_CHANGED_LINE = re.compile(r"^changed: \[", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXTRA_VAR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class DeployError(Exception):
    """A deployment that cannot start: what is wrong and what to do, in one line."""


# ------------------------------------------------------------------ progress (pure)
@dataclass(frozen=True)
class HostCounts:
    """Task results of one host, as Ansible's recap counts them (ok includes changed)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Progress:
    """What the events of a run said so far: per-host counts, and the recap once Ansible sent it."""

    hosts: Mapping[str, HostCounts] = field(default_factory=dict)
    recap: Mapping[str, HostCounts] | None = None

    def final(self) -> Mapping[str, HostCounts]:
        """The recap when Ansible sent one (it is authoritative), else what the events counted."""
        return self.recap if self.recap is not None else self.hosts

    def failed_hosts(self) -> list[str]:
        return sorted(h for h, c in self.final().items() if c.failed or c.unreachable)


_Step = tuple[Progress, list[str]]


def _count(progress: Progress, host: str, **increments: int) -> Progress:
    counts = progress.hosts.get(host, HostCounts())
    counts = replace(counts, **{k: getattr(counts, k) + v for k, v in increments.items()})
    return replace(progress, hosts={**progress.hosts, host: counts})


def _message(result: Any) -> str:
    if not isinstance(result, Mapping):
        return ""
    text = result.get("msg") or result.get("stderr") or result.get("reason") or ""
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."


def _recap(data: Mapping[str, Any]) -> dict[str, HostCounts]:
    def of(key: str, host: str) -> int:
        return int((data.get(key) or {}).get(host, 0))

    hosts: set[str] = set()
    for key in ("processed", "ok", "changed", "failures", "dark", "skipped"):
        hosts.update((data.get(key) or {}).keys())
    return {
        host: HostCounts(
            ok=of("ok", host),
            changed=of("changed", host),
            failed=of("failures", host),
            unreachable=of("dark", host),
            skipped=of("skipped", host),
        )
        for host in hosts
    }


def _play(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    return progress, [f"PLAY {data.get('play') or data.get('name') or ''}".rstrip()]


def _task(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    name = data.get("task") or data.get("task_action") or "?"
    # A collection's role by its FQCN (safekit.ha.node), as ansible-playbook shows it; ansible-runner
    # gives the short name in `role` and the FQCN in `resolved_role` when they differ.
    role = data.get("resolved_role") or data.get("role")
    label = "HANDLER" if event.get("event") == "playbook_on_handler_task_start" else "TASK"
    return progress, [f"{label} {role} : {name}" if role else f"{label} {name}"]


def _ok(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    host = str(data.get("host", ""))
    result = data.get("res") or {}
    if "censored" in result:
        # no_log: runner replaces the whole result, `changed` included; Ansible's own line still says.
        changed = bool(_CHANGED_LINE.search(_ANSI.sub("", str(event.get("stdout", "")))))
    else:
        changed = bool(result.get("changed"))
    return _count(progress, host, ok=1, changed=int(changed)), [f"  {host}: {'changed' if changed else 'ok'}"]


def _failed(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    host = str(data.get("host", ""))
    message = _message(data.get("res"))
    suffix = f": {message}" if message else ""
    if data.get("ignore_errors"):
        return _count(progress, host, ok=1), [f"  {host}: failed (ignored){suffix}"]
    return _count(progress, host, failed=1), [f"  {host}: FAILED{suffix}"]


def _unreachable(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    host = str(data.get("host", ""))
    message = _message(data.get("res"))
    return _count(progress, host, unreachable=1), [
        f"  {host}: UNREACHABLE{': ' + message if message else ''}"
    ]


def _skipped(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    host = str(data.get("host", ""))
    return _count(progress, host, skipped=1), [f"  {host}: skipped"]


def _no_hosts(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    return progress, ["  no hosts matched: check the inventory's groups (safekit_nodes)"]


def _stats(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    return replace(progress, recap=_recap(data)), []


def _verbose(progress: Progress, event: Mapping[str, Any], data: Mapping[str, Any]) -> _Step:
    # Ansible's own errors (a playbook that does not parse, a bad inventory) come as plain text.
    text = str(event.get("stdout", "")).strip()
    return progress, [text] if text.startswith(("ERROR", "[ERROR]")) else []


_ON_EVENT: dict[str, Callable[[Progress, Mapping[str, Any], Mapping[str, Any]], _Step]] = {
    "playbook_on_play_start": _play,
    "playbook_on_task_start": _task,
    "playbook_on_handler_task_start": _task,
    "runner_on_ok": _ok,
    "runner_on_failed": _failed,
    "runner_on_unreachable": _unreachable,
    "runner_on_skipped": _skipped,
    "playbook_on_no_hosts_matched": _no_hosts,
    "playbook_on_stats": _stats,
    "verbose": _verbose,
}


def apply_event(progress: Progress, event: Mapping[str, Any]) -> _Step:
    """One ansible-runner event: the progress after it, and the lines to show for it.

    A task is one line when it starts; each host's result is one line when it arrives. Loop items
    are not shown: the task's own result on the host follows them. Other events are silent.
    """
    handler = _ON_EVENT.get(str(event.get("event", "")))
    if handler is None:
        return progress, []
    return handler(progress, event, event.get("event_data") or {})


def summary_lines(progress: Progress, elapsed: float) -> list[str]:
    """The final summary: one line per host, then the total time and the verdict."""
    final = progress.final()
    width = max((len(h) for h in final), default=4)
    lines = ["SUMMARY"]
    for host in sorted(final):
        c = final[host]
        lines.append(
            f"  {host:<{width}}  ok={c.ok} changed={c.changed} failed={c.failed} unreachable={c.unreachable}"
        )
    failed = progress.failed_hosts()
    verdict = f"FAILED on {', '.join(failed)}" if failed else f"ok on {len(final)} hosts"
    lines.append(f"total time {elapsed:.1f} s: {verdict}")
    return lines


# ------------------------------------------------------------------ the command
def add_parser(subparsers: Any) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy a mirror or farm cluster with the playbooks (through ansible-runner)",
        description="Run playbooks/deploy-mirror.yml (or deploy-farm.yml) of this checkout on an "
        "inventory, showing each task as it starts and each host's result as it arrives, then a "
        "summary per host. Exit code 0 only if no host failed.",
    )
    deploy.add_argument("kind", choices=sorted(PLAYBOOKS), help="the kind of module to deploy")
    deploy.add_argument("-i", "--inventory", required=True, help="Ansible inventory (file or directory)")
    deploy.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a playbook variable (repeatable), e.g. -e safekit_web_port=8081",
    )
    deploy.add_argument("--check", action="store_true", help="report what would change, change nothing")


def project_root() -> Path:
    """The checkout the package runs from (src layout): it holds playbooks/, roles/, ansible.cfg."""
    root = Path(safekit.__file__).resolve().parents[2]
    if not (root / "playbooks").is_dir():
        raise DeployError(
            f"no playbooks/ directory in {root}: safekit deploy runs the playbooks of a checkout; "
            "install safekit from one (pip install -e '.[deploy]')"
        )
    return root


def parse_extra_vars(pairs: list[str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for pair in pairs:
        match = _EXTRA_VAR.match(pair)
        if not match:
            raise DeployError(f"-e {pair!r}: expected KEY=VALUE, e.g. -e safekit_web_port=8081")
        extra[match.group(1)] = match.group(2)
    return extra


def run(args: argparse.Namespace) -> int:
    try:
        return _deploy(args.kind, args.inventory, parse_extra_vars(args.extra_vars), check=args.check)
    except DeployError as exc:
        print(f"safekit deploy: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _deploy(kind: str, inventory: str, extra_vars: dict[str, str], *, check: bool) -> int:
    root = project_root()
    playbook = root / "playbooks" / PLAYBOOKS[kind]
    if not playbook.is_file():
        raise DeployError(f"{playbook}: no such playbook")
    inventory_path = Path(inventory)
    if not inventory_path.exists():
        raise DeployError(f"inventory {inventory}: no such file or directory")
    try:
        import ansible_runner  # noqa: PLC0415 - optional: only this command needs it
    except ImportError as exc:
        raise DeployError("ansible-runner is not installed: pip install 'safekit[deploy]'") from exc

    bin_dir = Path(sys.executable).parent
    ansible_playbook = bin_dir / "ansible-playbook"
    if not ansible_playbook.exists():
        raise DeployError(f"no ansible-playbook beside {sys.executable}: pip install 'safekit[deploy]'")
    envvars = {
        # The playbooks find the collection and roles through the checkout's ansible.cfg; an
        # ANSIBLE_CONFIG the user set wins.
        "ANSIBLE_CONFIG": os.environ.get("ANSIBLE_CONFIG", str(root / "ansible.cfg")),
        # The ansible-playbook of this Python environment, whatever PATH the user has.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # ansible-runner turns host key checking off unless told otherwise: keep Ansible's default.
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
    }
    progress = Progress()

    def on_event(event: dict[str, Any]) -> bool:
        nonlocal progress
        progress, lines = apply_event(progress, event)
        for line in lines:
            print(line, flush=True)
        return True

    work = Path(tempfile.mkdtemp(prefix="safekit-deploy-"))
    mode = " (check mode)" if check else ""
    print(f"safekit deploy {kind}: {playbook.relative_to(root)} on {inventory}{mode}", flush=True)
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(work),
            project_dir=str(root),
            playbook=str(playbook),
            inventory=str(inventory_path.resolve()),
            extravars=extra_vars,
            cmdline="--check" if check else None,
            envvars=envvars,
            event_handler=on_event,
            quiet=True,
        )
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        raise
    elapsed = time.monotonic() - started
    for line in summary_lines(progress, elapsed):
        print(line)
    if runner.rc == 0 and not progress.failed_hosts():
        shutil.rmtree(work, ignore_errors=True)
        return 0
    if progress.recap is None:
        print(f"ansible-playbook ended with status {runner.status} (rc {runner.rc}):", file=sys.stderr)
        tail = runner.stdout.read().strip().splitlines()[-15:] if runner.stdout else []
        for line in tail:
            print(f"  {line}", file=sys.stderr)
    print(f"safekit deploy: the whole output is in {work}/artifacts", file=sys.stderr)
    return EXIT_ERROR
