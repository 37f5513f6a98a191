"""`python -m safekit.rfs splitbrain-save SPEC.json` and `splitbrain-annotate SPEC.json DIR`: the
split-brain steps the native secondary runs as its children (`safekit.rfs.splitbrain_step`, ADR
0023). The replication processes themselves are the native programs (`safekit.rfs.native`)."""

from __future__ import annotations

import sys

USAGE = "usage: python -m safekit.rfs splitbrain-save SPEC.json | splitbrain-annotate SPEC.json DIR\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "splitbrain-save":
        from safekit.rfs.splitbrain_step import save_main  # noqa: PLC0415

        return save_main(args[1])
    if len(args) == 3 and args[0] == "splitbrain-annotate":
        from safekit.rfs.splitbrain_step import annotate_main  # noqa: PLC0415

        return annotate_main(args[1], args[2])
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
