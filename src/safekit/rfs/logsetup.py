"""Logging of the split-brain steps (children of the native secondary): lines on stderr, which
safekitd copies into the module log."""

from __future__ import annotations

import logging
import sys

from safekit.rfs.spec import RfsSpec


def setup(rfs: RfsSpec, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(levelname)s rfs {role}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if rfs.extra.get("debug") else logging.INFO)
