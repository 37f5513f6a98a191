"""`safekit`: the command line. Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from safekit import __version__, cloud_driver, commands, deploy
from safekit.api import cli as api_cli
from safekit.arbiter import cli as arbiter_cli
from safekit.config import ConfigError, check_file
from safekit.lab import cli as lab_cli
from safekit.lab.topology import LabError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says what to type for help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="safekit",
        description="Open, software-only high availability for Linux.",
        epilog="Commands act on this node, or with -H on other nodes through their API (HTTPS, verified "
        "against the cluster CA; see docs/api.md). Engine commands take --json; an error is one line on "
        "stderr and exit code 1.",
    )
    parser.add_argument("--version", action="version", version=f"safekit {__version__}")
    parser.add_argument(
        "-H",
        dest="hosts",
        metavar="NODE",
        help='run the command on NODE (names or addresses, comma-separated) or "*" (every node of '
        "cluster.xml) through their API",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    lab_cli.add_parser(subparsers)
    deploy.add_parser(subparsers)
    cloud_driver.add_parser(subparsers)
    api_cli.add_parser(subparsers)
    arbiter_cli.add_parser(subparsers)
    commands.add_parsers(subparsers)
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
    return parser


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    args = build_parser().parse_args(argv)
    try:
        if args.hosts is not None:
            return api_cli.run_remote(args)
        if args.command == "api":
            return api_cli.run(args)
        if args.command == "lab":
            return lab_cli.run(args)
        if args.command == "deploy":
            return deploy.run(args)
        if args.command == "cloud":
            return cloud_driver.run(args)
        if args.command == "arbiter":
            return arbiter_cli.run(args)
        if args.command == "config":
            return _config_check(args.file) if args.config_command == "check" else commands.apply_config(args)
        if commands.handles(args.command):
            return commands.run(args)
    except (LabError, commands.CommandError) as exc:
        print(f"safekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    print(f"safekit: unknown command {args.command!r}", file=sys.stderr)
    return EXIT_USAGE


def _config_check(files: list[str]) -> int:
    """Validate each file; every problem is printed as file:line: <element> message."""
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
