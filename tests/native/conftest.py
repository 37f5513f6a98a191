"""tests/native on the sanitizer builds (`make native-sanitize-test`, part of `make test`).

With SAFEKIT_NATIVE_SANITIZE, SAFEKIT_SECONDARY_SANITIZE or SAFEKIT_FRONT_SANITIZE set to 1, the
tests run the AddressSanitizer + UndefinedBehaviorSanitizer builds of the programs.
AddressSanitizer's reports (a memory error, a leak found at a clean exit) are written to files of
their own in a directory of this session (its `log_path`), whatever a test does with the process's
stderr: a test after which such a file appeared fails, with the report. UndefinedBehaviorSanitizer
(combined with AddressSanitizer by gcc) prints to stderr only: the logs of the processes a test
started (native_process.EventProcess) are read when the test's body ends, before its fixtures stop
the processes and remove their directories, and a "runtime error" or "Sanitizer" line fails it.
(test_secondary.py and test_front.py read their processes' stderr themselves.)"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_process import STARTED_LOGS

SANITIZE_VARS = ("SAFEKIT_NATIVE_SANITIZE", "SAFEKIT_SECONDARY_SANITIZE", "SAFEKIT_FRONT_SANITIZE")
SANITIZED = any(os.environ.get(v) == "1" for v in SANITIZE_VARS)
REPORTS: Path | None = None

if SANITIZED:
    REPORTS = Path(tempfile.mkdtemp(prefix="safekit-sanitizer-reports-", dir="/tmp"))
    for var, name in (("ASAN_OPTIONS", "asan"), ("UBSAN_OPTIONS", "ubsan")):
        options = [o for o in os.environ.get(var, "").split(":") if o and not o.startswith("log_path=")]
        os.environ[var] = ":".join([*options, f"log_path={REPORTS / name}"])


def reports() -> dict[str, str]:
    if REPORTS is None:
        return {}
    return {p.name: p.read_text(errors="replace") for p in sorted(REPORTS.iterdir())}


@pytest.fixture(autouse=True)
def no_sanitizer_report() -> Iterator[None]:
    before = set(reports())
    yield
    new = {name: text for name, text in reports().items() if name not in before}
    assert not new, "sanitizer reports:\n" + "\n".join(f"== {n}\n{t[-6000:]}" for n, t in new.items())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    STARTED_LOGS.clear()
    result = yield
    if SANITIZED:
        found = []
        for log in STARTED_LOGS:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            lines = [line for line in text.splitlines() if "runtime error" in line or "Sanitizer" in line]
            if lines:
                found.append(f"== {log}\n" + "\n".join(lines[:20]))
        assert not found, "sanitizer reports on stderr:\n" + "\n".join(found)
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPORTS is not None and not any(REPORTS.iterdir()):
        shutil.rmtree(REPORTS, ignore_errors=True)
