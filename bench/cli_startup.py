#!/usr/bin/env python3
"""Start-up of the `safekit` command line: this tree against a base revision, alternately, in one run.

The roles call the engine about five times per node on a rerun (`--version`, `config check`,
`state --json`, `module templates`...), and each call paid for importing every command's module.
This runs those calls with the base revision's src (a `git archive` of it) and this tree's, in
turns (the first of each pair alternates), at the same load; no safekitd is needed (`state` fails
at once on a control socket that does not exist, after the whole start-up).

Also, once per variant: `python -X importtime -m safekit --version`'s total import time (the base
has no `__main__`, so both run `from safekit.cli import main` through `-c`), and the whole help
tree (every parser's `--help` text, by path) of both, which must be identical.

Writes bench/results/cli_startup.json: per command the median wall of each variant, tree/base.

Usage: bench/cli_startup.py [--base REV] [--rounds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_XML = ROOT / "examples" / "cluster-lab.xml"
COMMANDS: dict[str, list[str]] = {
    "--version": ["--version"],
    "state --json": ["state", "--json"],
    "config check cluster.xml": ["config", "check", str(CLUSTER_XML)],
    "module templates --json": ["module", "templates", "--json"],
    "--help": ["--help"],
}
RUN = "import sys; from safekit.cli import main; sys.exit(main(sys.argv[1:]))"
HELP_TREE = """
import argparse, json
from safekit import cli
built = cli.build_parser()
parser = built[0] if isinstance(built, tuple) else built
tree = {}
def walk(p, path):
    tree[" ".join(path)] = p.format_help()
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, child in a.choices.items():
                walk(child, (*path, name))
walk(parser, ("safekit",))
print(json.dumps(tree))
"""


def base_tree(revision: str, into: Path) -> Path:
    """The base revision's src (read from git, nothing written to the repository)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src", "pyproject.toml"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def env_for(tree: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree / "src"),
        "COLUMNS": "100",
        "SAFEKIT_RUN": "/nonexistent/safekit-bench-run",
        "SAFEVAR": "/nonexistent/safekit-bench-var",
    }


def wall(tree: Path, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RUN, *argv], env=env_for(tree), capture_output=True, check=False, timeout=60
    )
    return time.perf_counter() - start


def import_total_s(tree: Path) -> float:
    """Sum of the top-level entries of -X importtime (every import of `safekit --version`)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUN, "--version"],
        env=env_for(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    total_us = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # depth 0: " name"
            total_us += int(cumulative)
    return total_us / 1e6


def help_tree(tree: Path) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", HELP_TREE], env=env_for(tree), capture_output=True, text=True, check=True
    )
    tree_help: dict[str, str] = json.loads(done.stdout)
    return tree_help


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare with (default: HEAD~1)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default: 5)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="calls per command, variant and round (default: 3)"
    )
    args = parser.parse_args()
    base_rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="safekit-bench-cli-") as tmp:
        trees = {"base": base_tree(args.base, Path(tmp)), "tree": ROOT}
        helps = {variant: help_tree(path) for variant, path in trees.items()}
        differing = sorted(
            p
            for p in helps["base"].keys() | helps["tree"].keys()
            if helps["base"].get(p) != helps["tree"].get(p)
        )
        samples: dict[str, dict[str, list[float]]] = {c: {"base": [], "tree": []} for c in COMMANDS}
        imports: dict[str, list[float]] = {"base": [], "tree": []}
        python_alone: list[float] = []
        loads: list[float] = []
        for number in range(args.rounds):
            order = ["base", "tree"] if number % 2 == 0 else ["tree", "base"]
            loads.append(os.getloadavg()[0])
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python_alone.append(time.perf_counter() - start)
            for variant in order:
                imports[variant].append(import_total_s(trees[variant]))
                for name, argv in COMMANDS.items():
                    samples[name][variant] += [wall(trees[variant], argv) for _ in range(args.repeat)]
            print(f"round {number + 1}/{args.rounds} done, load {loads[-1]:.2f}", flush=True)
    per_command: dict[str, Any] = {}
    for name, walls in samples.items():
        medians = {variant: statistics.median(values) for variant, values in walls.items()}
        per_command[name] = {
            "median_s": {variant: round(value, 3) for variant, value in medians.items()},
            "tree_over_base": round(medians["tree"] / medians["base"], 2),
            "samples": len(walls["tree"]),
        }
    import_medians = {variant: round(statistics.median(values), 3) for variant, values in imports.items()}
    path = write_result(
        "cli_startup",
        {
            "what": "wall of one `safekit` call (a fresh interpreter), this tree's src against the base's, "
            "alternately; import total of `--version` from -X importtime",
            "base": f"{args.base} ({base_rev})",
            "rounds": args.rounds,
            "repeat": args.repeat,
            "commands": per_command,
            "import_total_version_s": import_medians,
            "python_alone_median_s": round(statistics.median(python_alone), 3),
            "loadavg_1m_during": [round(load, 2) for load in loads],
            "help_tree_parsers": len(helps["tree"]),
            "help_tree_identical": not differing,
            "help_tree_differing": differing,
        },
    )
    print(json.dumps(per_command, indent=2), import_medians, "help identical:", not differing, path)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
