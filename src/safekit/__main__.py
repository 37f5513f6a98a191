"""`python -m safekit ...`: the `safekit` command line."""

from __future__ import annotations

import sys

from safekit.cli import main

sys.exit(main())
