"""Entry point of `safekitd`.

The daemon is built by the mirror engine issue; until then this entry point exists so that the
package layout, the console script and the systemd unit name are fixed, and it says plainly that it
cannot run yet instead of pretending to.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    del argv
    print("safekitd: the daemon is not implemented yet (see the mirror engine issue)", file=sys.stderr)
    return 69  # EX_UNAVAILABLE


if __name__ == "__main__":
    raise SystemExit(main())
