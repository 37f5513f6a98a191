"""`safekit`: the command line. Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from safekit import __version__
from safekit.lab import cli as lab_cli
from safekit.lab.topology import LabError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says what to type for help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="safekit", description="Open, software-only high availability for Linux.")
    parser.add_argument("--version", action="version", version=f"safekit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    lab_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "lab":
            return lab_cli.run(args)
    except LabError as exc:
        print(f"safekit {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    print(f"safekit: unknown command {args.command!r}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
