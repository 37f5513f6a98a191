"""`safekit`: the command line. Errors are one line on stderr and a non-zero exit code.

Each call loads only the module of the command it runs (docs/adr/0056): the roles call the
engine several times per node, and importing every command's module cost most of each call.
`safekit --help`, no command, or a name this table does not know build the whole tree, so the
help and argparse's own errors are those of every command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says what to type for help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Loaded:
    """A part of the command line once its module is imported: how to run it, and its one-line errors."""

    run: Run
    errors: tuple[type[Exception], ...] = ()


def _lab(subparsers: Any) -> Loaded:
    from safekit.lab import cli  # noqa: PLC0415 - each part is imported only when its command runs
    from safekit.lab.topology import LabError  # noqa: PLC0415

    cli.add_parser(subparsers)
    return Loaded(cli.run, (LabError,))


def _deploy(subparsers: Any) -> Loaded:
    from safekit import deploy  # noqa: PLC0415

    deploy.add_parser(subparsers)
    return Loaded(deploy.run)


def _cloud(subparsers: Any) -> Loaded:
    from safekit import cloud_driver  # noqa: PLC0415

    cloud_driver.add_parser(subparsers)
    return Loaded(cloud_driver.run)


def _api(subparsers: Any) -> Loaded:
    from safekit.api import cli  # noqa: PLC0415

    cli.add_parser(subparsers)
    return Loaded(cli.run)


def _arbiter(subparsers: Any) -> Loaded:
    from safekit.arbiter import cli  # noqa: PLC0415

    cli.add_parser(subparsers)
    return Loaded(cli.run)


def _engine(subparsers: Any) -> Loaded:
    from safekit import commands  # noqa: PLC0415

    commands.add_parsers(subparsers)
    return Loaded(commands.run, (commands.CommandError,))


def _config(subparsers: Any) -> Loaded:
    from safekit import commands  # noqa: PLC0415

    config = subparsers.add_parser(
        "config",
        help="apply a module's configuration (-m AM), or check files (check FILE...)",
        description="safekit config -m AM: load module AM's configuration again (the module must be "
        "stopped). safekit config check FILE...: validate files without applying them.",
    )
    config.add_argument("-m", dest="module", metavar="AM", help="the module whose configuration to apply")
    config.add_argument("--json", action="store_true", help="print the answer as JSON")
    config_cmds = config.add_subparsers(dest="config_command", metavar="COMMAND", required=False)
    check = config_cmds.add_parser("check", help="validate a cluster.xml or userconfig.xml")
    check.add_argument("file", nargs="+", help="cluster.xml, userconfig.xml, or a module directory")

    def run(args: argparse.Namespace) -> int:
        return _config_check(args.file) if args.config_command == "check" else commands.apply_config(args)

    return Loaded(run, (commands.CommandError,))


ENGINE_COMMANDS = (
    *("start", "stop", "restart", "stopstart", "forcestop", "swap", "prim", "second", "primforce"),
    *("state", "waitstate", "get", "set", "log", "snapshot", "cluster", "errd", "checker", "failover"),
    *("boot", "module", "confinfo", "waitstart", "waitstop", "shutdown", "farm", "rfs", "splitbrain"),
    *("report", "vip"),
)
"""The commands `safekit.commands.add_parsers` adds (a test holds the two equal)."""

PARTS: tuple[tuple[tuple[str, ...], Callable[[Any], Loaded]], ...] = (
    (("lab",), _lab),
    (("deploy",), _deploy),
    (("cloud",), _cloud),
    (("api",), _api),
    (("arbiter",), _arbiter),
    (ENGINE_COMMANDS, _engine),
    (("config",), _config),
)
"""The command line's parts in the order `safekit --help` lists them: the commands each adds, its loader."""


class _Version(argparse.Action):
    """--version, reading the version only when asked (finding it is not free once installed)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> NoReturn:
        from safekit import __version__  # noqa: PLC0415

        print(f"safekit {__version__}")
        parser.exit()


def command_named(argv: Sequence[str]) -> str | None:
    """The command `argv` runs, when its only options before it are -H NODE; None otherwise (--help...)."""
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word == "-H":
            if not rest:
                return None
            rest.pop(0)
        elif word.startswith("-H") and not word.startswith("--"):
            continue
        else:
            return None if word.startswith("-") else word
    return None


def build_parser(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, Loaded]]:
    """The parser for `argv`, with only the part that runs its command; every part when `argv` is None,
    names no known command, or asks for help. Also each loaded command's `Loaded`."""
    parser = _Parser(
        prog="safekit",
        description="Open, software-only high availability for Linux.",
        epilog="Commands act on this node, or with -H on other nodes through their API (HTTPS, verified "
        "against the cluster CA; see docs/api.md). Engine commands take --json; an error is one line on "
        "stderr and exit code 1.",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "-H",
        dest="hosts",
        metavar="NODE",
        help='run the command on NODE (names or addresses, comma-separated) or "*" (every node of '
        "cluster.xml) through their API",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    wanted = None if argv is None else command_named(argv)
    only_version = argv is not None and list(argv[:1]) == ["--version"]
    parts = [part for part in PARTS if wanted in part[0]]
    if not parts and not only_version:
        parts = list(PARTS)
    loaded: dict[str, Loaded] = {}
    for names, load in parts:
        part = load(subparsers)
        loaded.update(dict.fromkeys(names, part))
    return parser, loaded


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser, loaded = build_parser(argv)
    args = parser.parse_args(argv)
    part = loaded.get(args.command)
    if part is None:  # argparse knows every command it parsed; kept as the last guard
        print(f"safekit: unknown command {args.command!r}", file=sys.stderr)
        return EXIT_USAGE
    errors = part.errors
    try:
        if args.hosts is not None:
            from safekit import commands  # noqa: PLC0415 - only -H needs the API client
            from safekit.api import cli as api_cli  # noqa: PLC0415

            errors = (*errors, commands.CommandError)
            return api_cli.run_remote(args)
        return part.run(args)
    except errors as exc:
        print(f"safekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _config_check(files: list[str]) -> int:
    """Validate each file; every problem is printed as file:line: <element> message."""
    from safekit.config import ConfigError, check_file  # noqa: PLC0415

    failed = False
    for name in files:
        try:
            warnings = check_file(name)
        except ConfigError as exc:
            for error in exc.errors:
                print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        except OSError as exc:
            print(f"error: {name}: {exc.strerror}", file=sys.stderr)
            failed = True
            continue
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{name}: ok")
    return EXIT_ERROR if failed else 0


if __name__ == "__main__":
    sys.exit(main())
