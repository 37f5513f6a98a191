"""The command line loads only the part of the command it runs (docs/adr/0056), and nothing a user
sees changed: every command's help and arguments are those of the whole tree, every command still
parses to the same arguments, and `safekit --help` still lists every command.

The before/after comparison with the code from before the change is bench/cli_startup.py's
(`help_tree_identical` in bench/results/cli_startup.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from safekit import cli, commands

SRC = Path(__file__).resolve().parents[2] / "src"


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return found[0] if found else None


def _sample(action: argparse.Action) -> list[str]:
    """A value argparse accepts for `action`: its first choice, or "1" (a number, a name or a path)."""
    value = str(next(iter(action.choices))) if action.choices else "1"
    if action.nargs == 0:
        return [action.option_strings[0]]
    count = action.nargs if isinstance(action.nargs, int) else 1
    return [*action.option_strings[:1], *[value] * count]


def _required_words(parser: argparse.ArgumentParser) -> list[str]:
    """The shortest argument list this parser takes (its subcommand left out)."""
    words: list[str] = []
    groups = [g for g in parser._mutually_exclusive_groups if g.required]
    in_group = {id(a) for g in groups for a in g._group_actions}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or id(action) in in_group:
            continue
        optional = action.nargs in ("?", "*", argparse.REMAINDER)
        if action.required if action.option_strings else not optional:
            words += _sample(action)
    for group in groups:
        words += _sample(group._group_actions[0])
    return words


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path that runs something: ('state',), ('module', 'list'), ('config',)..."""
    sub = _subparsers(parser)
    if path and (sub is None or not sub.required):
        yield path
    if sub is not None:
        for name, child in sub.choices.items():
            yield from command_paths(child, (*path, name))


def _parser_at(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        sub = _subparsers(parser)
        assert sub is not None, path
        parser = sub.choices[name]
    return parser


def _argv(full: argparse.ArgumentParser, path: tuple[str, ...]) -> list[str]:
    """The words for `path`: at each level the required arguments, then the next command name."""
    argv: list[str] = []
    parser = full
    for name in path:
        argv += _required_words(parser) if parser is not full else []
        sub = _subparsers(parser)
        assert sub is not None
        argv.append(name)
        parser = sub.choices[name]
    return argv + _required_words(parser)


FULL, EVERY_PART = cli.build_parser()
PATHS = list(command_paths(FULL))


def test_the_parts_name_every_command_in_the_order_help_lists_them() -> None:
    sub = _subparsers(FULL)
    assert sub is not None
    assert [name for names, _load in cli.PARTS for name in names] == list(sub.choices)
    assert set(EVERY_PART) == set(sub.choices)


def test_engine_commands_are_those_commands_adds() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    commands.add_parsers(sub)
    assert tuple(sub.choices) == cli.ENGINE_COMMANDS


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_each_command_loads_its_part_only_with_the_same_help_and_arguments(path: tuple[str, ...]) -> None:
    argv = _argv(FULL, path)
    lazy, loaded = cli.build_parser(argv)
    part = next(names for names, _load in cli.PARTS if path[0] in names)
    assert set(loaded) == set(part), f"safekit {' '.join(path)} loaded more than its part"
    for depth in range(1, len(path) + 1):
        assert _parser_at(lazy, path[:depth]).format_help() == _parser_at(FULL, path[:depth]).format_help()
    assert vars(lazy.parse_args(argv)) == vars(FULL.parse_args(argv))
    assert vars(lazy.parse_args(["-H", "node2", *argv])) == vars(FULL.parse_args(["-H", "node2", *argv]))


def test_every_command_is_reached() -> None:
    """The walk above covers every command of the tree (a part that added nothing would show here)."""
    assert len(PATHS) > 60
    assert {p[0] for p in PATHS} == set(EVERY_PART)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["state"], "state"),
        (["-H", "node2", "state"], "state"),
        (["-Hnode2", "state", "-m", "x"], "state"),
        (["--version"], None),
        (["--help"], None),
        (["-H"], None),
        ([], None),
        (["-v", "state"], None),
    ],
)
def test_the_command_is_read_before_any_parser(argv: list[str], command: str | None) -> None:
    assert cli.command_named(argv) == command


def test_help_unknown_command_and_no_command_build_the_whole_tree() -> None:
    for argv in (["--help"], ["nosuch"], [], ["-H", "x"]):
        _parser, loaded = cli.build_parser(argv)
        assert set(loaded) == set(EVERY_PART), argv


def test_an_unknown_command_is_refused_with_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["nosuch"])
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err
    assert all(repr(name) in err for name in EVERY_PART)


def _run(*argv: str) -> dict[str, object]:
    """`safekit ARGV` in a fresh interpreter: exit code, output, and which modules it imported."""
    probe = (
        "import json, sys\n"
        "from safekit.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "sys.stdout.flush()\n"
        "print('\\n' + json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "SAFEKIT_RUN": "/nonexistent/safekit-run",
        "SAFEVAR": "/nonexistent/safekit-var",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    head, _, last = done.stdout.rstrip("\n").rpartition("\n")
    result: dict[str, object] = json.loads(last)
    result["stdout"] = head.rstrip("\n")
    return result


HEAVY = ("pyroute2", "safekit.lab", "safekit.arbiter", "safekit.api", "safekit.cloud_driver", "yaml")


def test_version_loads_no_command() -> None:
    from safekit import __version__  # noqa: PLC0415 - the attribute is read lazily; this reads it

    ran = _run("--version")
    assert ran["code"] == 0
    assert ran["stdout"] == f"safekit {__version__}"
    modules = ran["modules"]
    assert isinstance(modules, list)
    assert "safekit.commands" not in modules
    assert not [m for m in modules if m.startswith(HEAVY)]


def test_state_loads_the_engine_commands_only() -> None:
    ran = _run("state", "--json")
    modules = ran["modules"]
    assert isinstance(modules, list)
    assert "safekit.commands" in modules
    assert not [m for m in modules if m.startswith((*HEAVY, "safekit.config"))]


def test_config_check_still_validates(tmp_path: Path) -> None:
    bad = tmp_path / "userconfig.xml"
    bad.write_text("<safe><service mode='nosuch'/></safe>", encoding="utf-8")
    ran = _run("config", "check", str(bad))
    assert ran["code"] == cli.EXIT_ERROR
