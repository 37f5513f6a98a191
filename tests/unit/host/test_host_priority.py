"""safekitd runs ahead of the applications; the scripts it starts run at normal priority."""

from __future__ import annotations

import pytest

from safekit.host import priority


def test_scripts_go_back_to_nice_zero_when_the_daemon_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority.os, "getpriority", lambda which, who: -5)
    assert priority.at_normal_priority(["/bin/start_prim", "WAIT", "ALONE", "start"]) == [
        "nice",
        "-n",
        "5",
        "/bin/start_prim",
        "WAIT",
        "ALONE",
        "start",
    ]


def test_nothing_changes_at_normal_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority.os, "getpriority", lambda which, who: 0)
    assert priority.at_normal_priority(["/bin/x"]) == ["/bin/x"]
