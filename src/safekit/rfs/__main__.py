"""`python -m safekit.rfs primary|secondary SPEC.json`: a module's replication process, started
and watched by safekitd (one per module). `splitbrain-save SPEC.json` and `splitbrain-annotate
SPEC.json DIR`: the split-brain steps the native secondary runs (`safekit.rfs.splitbrain_step`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "splitbrain-save":
        from safekit.rfs.splitbrain_step import save_main  # noqa: PLC0415

        return save_main(args[1])
    if len(args) == 3 and args[0] == "splitbrain-annotate":
        from safekit.rfs.splitbrain_step import annotate_main  # noqa: PLC0415

        return annotate_main(args[1], args[2])
    if len(args) != 2 or args[0] not in ("primary", "secondary"):
        sys.stderr.write("usage: python -m safekit.rfs primary|secondary SPEC.json\n")
        return 2
    if args[0] == "primary":
        from safekit.rfs.primary import main as run  # noqa: PLC0415 - the secondary never loads FUSE
    else:
        from safekit.rfs.secondary import main as run  # noqa: PLC0415
    return run(args[1])


if __name__ == "__main__":
    sys.exit(main())
