"""The replication engine the rfs integration tests run on (docs/replication.md, "Engines"; ADR 0024).

`SAFEKIT_TEST_RFS_ENGINE=native` (`make test-rfs-native`) runs them on the native programs
(native/build of this checkout): the modules get `<rfs engine="native">`. Unset or `python`: the
Python engine, the default. A test that needs what the native programs do not do yet is marked
`@pytest.mark.native_missing("what")`: on the native engine it is a strict xfail (conftest.py): it
must fail there, and an unexpected pass fails the run, so the mark goes once the feature lands.
"""

from __future__ import annotations

import os

from safekit.rfs import native

ENGINE_ENV = "SAFEKIT_TEST_RFS_ENGINE"


def _engine() -> native.Engine:
    value = os.environ.get(ENGINE_ENV, "")
    return native.parse_engine(value, ENGINE_ENV) if value.strip() else "python"


ENGINE: native.Engine = _engine()
NATIVE = ENGINE == "native"


def engine_attribute(engine: native.Engine = ENGINE) -> str:
    """The <rfs> attribute choosing the engine (none for Python: the default path is what runs)."""
    return ' engine="native"' if engine == "native" else ""


def rfs_role(cmdline: bytes) -> str | None:
    """The role of a replication process from /proc/PID/cmdline, on either engine."""
    return native.role_of_argv([a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0")])
