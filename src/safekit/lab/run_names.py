"""Lab names of one test run: two runs on one machine never build, or take down, the same lab.

A test names its lab with `run_lab_name("itvip")` instead of "itvip": the name gets the run's
prefix, `$SAFEKIT_TEST_LAB_PREFIX` when set (1-4 lower-case letters or digits, starting with a letter),
else "t" and three characters made from the pid of the process that asked first. That process
exports the prefix, so everything it starts (a CLI, a child pytest) uses the same one. A lab name
has at most `MAX_NAME_LEN` (9) characters (it becomes part of interface names): a base that does not
fit beside the prefix keeps its first characters and ends with two characters of its CRC-32, so
that different bases stay different names.

A run that died without taking its labs down (SIGKILL) leaves them behind under its own prefix;
`register_run` records which process owns a prefix made from its pid, and `stale_prefixes` finds
those whose process is gone, for the next test session to take their labs down (ADR 0066).
"""

from __future__ import annotations

import contextlib
import os
import re
import string
import zlib
from pathlib import Path

from safekit.lab.topology import MAX_NAME_LEN, LabError, validate_name

PREFIX_ENV = "SAFEKIT_TEST_LAB_PREFIX"
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
RUNS_DIR = Path("/run/lock/safekit-test-labs")
"""One file per run prefix, holding the pid of the run that owns it."""
DIGITS = string.digits + string.ascii_lowercase
DIGEST_LEN = 2


def _base36(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, len(DIGITS))
        chars.append(DIGITS[digit])
    return "".join(reversed(chars))


def prefix_for_pid(pid: int) -> str:
    """'t' and the pid in base 36, last three digits: runs whose pids differ by less than 36**3
    (46,656) get different prefixes."""
    return "t" + _base36(pid, 3)


def validate_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise LabError(
            f"{PREFIX_ENV}={prefix!r} is invalid: 1-4 lower-case letters or digits, starting with a letter"
        )
    return prefix


def run_prefix() -> str:
    """The run's prefix (see the module's docstring); exported to the environment on first use."""
    prefix = os.environ.get(PREFIX_ENV) or prefix_for_pid(os.getpid())
    os.environ[PREFIX_ENV] = validate_prefix(prefix)
    return prefix


def run_lab_name(base: str, prefix: str | None = None) -> str:
    """`base` (a test's own lab name) made unique to the run: the prefix, then the base, shortened
    with a digest of it when both do not fit in a lab name."""
    prefix = run_prefix() if prefix is None else validate_prefix(prefix)
    if not re.fullmatch(r"[a-z0-9]+", base):
        raise LabError(f"lab name base {base!r} is invalid: lower-case letters or digits")
    room = MAX_NAME_LEN - len(prefix)
    if len(base) > room:
        base = base[: room - DIGEST_LEN] + _base36(zlib.crc32(base.encode()), DIGEST_LEN)
    return validate_name(prefix + base)


def register_run(prefix: str, pid: int | None = None, runs_dir: Path | None = None) -> Path:
    """Record that process `pid` (this one) owns the labs named with `prefix`. Only for a prefix made
    from the pid: a prefix a user chose may be theirs beyond this run."""
    path = (runs_dir or RUNS_DIR) / validate_prefix(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid() if pid is None else pid}\n", encoding="utf-8")
    return path


def forget_run(prefix: str, runs_dir: Path | None = None) -> None:
    with contextlib.suppress(OSError):
        ((runs_dir or RUNS_DIR) / validate_prefix(prefix)).unlink()


def stale_prefixes(runs_dir: Path | None = None) -> list[str]:
    """Prefixes of recorded runs whose process is gone: their labs are leftovers."""
    directory = runs_dir or RUNS_DIR
    if not directory.is_dir():
        return []
    stale = []
    for path in sorted(directory.iterdir()):
        try:
            pid = int(path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if PREFIX_RE.match(path.name) and not _alive(pid):
            stale.append(path.name)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
