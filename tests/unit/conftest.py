"""Settings of the unit tests (and of the fuzz and native tests, which `make test` runs in the same
session).

Hypothesis's per-example deadline (200 ms by default) is a wall-clock speed assertion: the unit
tests run beside the lab's integration tests on a shared two-core machine (`make test`), where an
example can wait for a core. Speed is measured in bench/, not asserted in unit tests, so no test
has a deadline; the fuzz targets bound each example by CPU time instead (tests/fuzz/fuzz_support).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("safekit", deadline=None)
settings.load_profile("safekit")
