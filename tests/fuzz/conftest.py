"""Hypothesis profiles of the fuzz targets, and the examples count printed after the run.

`ci` (the default) is the short run of `make test`: a bounded number of examples per target so
that the whole of tests/fuzz takes well under two minutes on a loaded two-core machine. `long`
(`SAFEKIT_FUZZ=long`, `make fuzz`) runs 30 times as many. Neither is derandomized: every run
explores new inputs, and hypothesis's example database (.hypothesis/) replays past failures first.
See docs/fuzzing.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fuzz_support import EXAMPLES, PROFILE
from hypothesis import HealthCheck, settings

# test_fuzz_api drives the app over the fake node of the API's unit tests (api_env): one fake
# node for every API test.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "api"))

CI_EXAMPLES = 150
LONG_FACTOR = 30

_COMMON = {
    "derandomize": False,
    # The per-example bound is CPU time (fuzz_support.bounded): wall-clock deadlines flake when
    # other processes share the cores.
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=CI_EXAMPLES, **_COMMON)
settings.register_profile("long", max_examples=CI_EXAMPLES * LONG_FACTOR, **_COMMON)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EXAMPLES:
        return
    terminalreporter.section(f"fuzz examples (profile {PROFILE})")
    width = max(len(target) for target in EXAMPLES)
    for target, number in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{target:<{width}}  {number:>7}")
    terminalreporter.write_line(f"{'total':<{width}}  {sum(EXAMPLES.values()):>7}")


def pytest_unconfigure(config: pytest.Config) -> None:
    # test_fuzz_api builds its app when collected: close it even if none of its tests ran.
    module = sys.modules.get("test_fuzz_api")
    if module is not None:
        module.shutdown()
