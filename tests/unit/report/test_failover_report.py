"""Failover reports from a module's journal: episodes, their steps and durations, the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pytest

from safekit import failover_report, report_cli
from safekit.daemon.module_journal import ModuleJournal
from safekit.host.paths import Paths

T0 = 1_780_000_000.0


def t(record: dict[str, object], at: float) -> dict[str, object]:
    return {"t": T0 + at, **record}


# A secondary taking over after its primary lost power, as the executor journals it.
TAKEOVER = [
    t({"kind": "transition", "from": "STOP (NotReady)", "to": "WAIT (Transient)", "reason": "start"}, -60),
    t({"kind": "transition", "from": "WAIT (Transient)", "to": "SECOND (Ready)", "reason": "in sync"}, -58),
    t({"kind": "step", "name": "Persist", "duration": 0.004, "ok": True}, -30),  # steady state: ignored
    t({"kind": "transition", "from": "SECOND (Ready)", "to": "WAIT (Transient)", "reason": "peer absent"}, 0),
    t(
        {
            "kind": "transition",
            "from": "WAIT (Transient)",
            "to": "ALONE (Transient)",
            "reason": "peer absent; witness reachable 0.66s after the loss",
        },
        0.66,
    ),
    t({"kind": "step", "name": "StartReplication", "duration": 0.35, "ok": True}, 0.67),
    t({"kind": "step", "name": "AcquireVip", "duration": 0.05, "ok": True}, 1.02),
    t({"kind": "script", "name": "start_prim", "duration": 1.2, "outcome": "ok"}, 1.08),
    t({"kind": "transition", "from": "ALONE (Transient)", "to": "ALONE (Ready)", "reason": "started"}, 2.3),
]


def test_a_takeover_is_one_failover_episode_with_its_steps_in_order() -> None:
    found = failover_report.episodes(TAKEOVER)
    start, takeover = found
    assert not start.failover and start.to_state == "SECOND (Ready)"  # a first start is not a failover
    assert takeover.failover and takeover.took == pytest.approx(2.3)
    assert (takeover.from_state, takeover.to_state) == ("SECOND (Ready)", "ALONE (Ready)")
    assert takeover.trigger.outcome == "peer absent"
    assert [e.name for e in takeover.entries] == [
        "SECOND (Ready) -> WAIT (Transient)",
        "WAIT (Transient) -> ALONE (Transient)",
        "StartReplication",
        "AcquireVip",
        "start_prim",
        "ALONE (Transient) -> ALONE (Ready)",
    ]
    text = "\n".join(failover_report.render("web", "node2", takeover))
    assert "web on node2: failover SECOND (Ready) -> ALONE (Ready) in 2.30 s" in text
    assert "detected  SECOND (Ready) -> WAIT (Transient): peer absent" in text
    assert "decided   WAIT (Transient) -> ALONE (Transient): peer absent; witness reachable" in text
    assert "script    start_prim 1.200 s ok" in text and "step      AcquireVip 0.050 s ok" in text


def test_an_episode_still_going_on_and_a_torn_last_line() -> None:
    lines = [json.dumps(r) for r in TAKEOVER[:6]] + ['{"t": 1780000003.0, "kind": "scr']
    found = failover_report.episodes(failover_report.parse_lines(lines))
    assert found[-1].ended is None and found[-1].took is None
    assert "still going on" in failover_report.render("web", "node2", found[-1])[0]


def test_the_journal_written_by_the_daemon_is_read_back_by_safekit_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path
    paths = Paths(safe=root / "safe", conf=root / "conf", var=root / "var", log=root / "log", run=root)
    journal = ModuleJournal(paths.module_journal("web"), logging.getLogger("test"))
    journal.transition("SECOND (Ready)", "WAIT (Transient)", "peer absent")
    journal.step("AcquireVip", began=time.time(), ok=True)
    journal.script("start_prim", time.time(), "ok")
    journal.transition("WAIT (Transient)", "PRIM (Ready)", "peer absent; witness answered")
    args = argparse.Namespace(module="web", last=None, json=True)
    assert report_cli.run(args, paths) == 0
    [episode] = json.loads(capsys.readouterr().out)
    assert episode["failover"] is True and episode["to"] == "PRIM (Ready)"
    assert [e["name"] for e in episode["entries"]][1:3] == ["AcquireVip", "start_prim"]
    empty = argparse.Namespace(module="other", last=None, json=False)
    assert report_cli.run(empty, paths) == 1
    assert "no episode recorded for module other" in capsys.readouterr().err


def test_the_silence_before_a_takeover_is_its_detection_step() -> None:
    """The daemon journals the peer's silence when it declares the peer lost (last heartbeat -> now,
    3 s here): the episode it causes shows it first, at a negative offset, with its duration; a
    detection too old for the next episode is left out of it."""
    detection = t(
        {"kind": "detection", "name": "no heartbeat from node1 on default, lan1", "duration": 3.0}, -3.0
    )
    stale = t({"kind": "detection", "name": "no heartbeat from node1 on default", "duration": 1.0}, -40.0)
    found = failover_report.episodes([*TAKEOVER[:3], stale, detection, *TAKEOVER[3:]])
    start, takeover = found
    assert [e.kind for e in start.entries] == ["transition", "transition"]  # the stale one: in no episode
    assert takeover.entries[0].kind == "detection" and takeover.entries[0].duration == 3.0
    assert takeover.trigger.name == "SECOND (Ready) -> WAIT (Transient)"
    assert takeover.took == pytest.approx(2.3)  # still from the first transition
    assert takeover.to_json()["entries"][0]["offset"] == -3.0
    text = "\n".join(failover_report.render("web", "node2", takeover))
    assert "-3.000 s  detection no heartbeat from node1 on default, lan1 3.000 s" in text
    assert "+0.000 s  detected  SECOND (Ready) -> WAIT (Transient): peer absent" in text
    late = t({"kind": "detection", "name": "no heartbeat from node1 on default", "duration": 1.0}, -5.0)
    [_, without] = failover_report.episodes([*TAKEOVER[:3], late, *TAKEOVER[3:]])
    assert without.entries[0].kind == "transition"  # 4 s before the transition: another matter


def test_the_daemon_journals_a_detection_that_safekit_report_shows(tmp_path: Path) -> None:
    journal = ModuleJournal(tmp_path / "web.journal", logging.getLogger("test"))
    journal.detection("no heartbeat from node1 on default", 2.5)
    journal.transition("SECOND (Ready)", "ALONE (Transient)", "peer lost")
    journal.transition("ALONE (Transient)", "ALONE (Ready)", "start_prim done")
    records = failover_report.parse_lines((tmp_path / "web.journal").read_text().splitlines())
    [episode] = failover_report.episodes(records)
    first = episode.to_json()["entries"][0]
    assert (first["kind"], first["name"], first["duration"]) == (
        "detection",
        "no heartbeat from node1 on default",
        2.5,
    )
    assert -2.6 < first["offset"] <= -2.5


# The primary's side of a stopstart that hands the module over (ADR 0060), as the executor
# journals it: the VIP released first, stop_prim, then the node comes back as secondary.
HANDOVER = [
    t(
        {
            "kind": "transition",
            "from": "PRIM (Ready)",
            "to": "WAIT (Transient)",
            "reason": "custom.app asks stopstart",
        },
        0,
    ),
    t({"kind": "step", "name": "ReleaseVip", "duration": 0.03, "ok": True}, 0.0),
    t({"kind": "script", "name": "stop_prim", "duration": 2.5, "outcome": "ok"}, 0.03),
    t({"kind": "step", "name": "StopReplication", "duration": 0.2, "ok": True}, 2.53),
    t({"kind": "script", "name": "prestart", "duration": 0.1, "outcome": "ok"}, 2.75),
    t(
        {
            "kind": "transition",
            "from": "WAIT (Transient)",
            "to": "SECOND (Transient)",
            "reason": "node2 is ALONE",
        },
        4.1,
    ),
    t({"kind": "script", "name": "start_second", "duration": 0.4, "outcome": "ok"}, 4.1),
    t({"kind": "transition", "from": "SECOND (Transient)", "to": "SECOND (Ready)", "reason": "in sync"}, 9.0),
]


def test_the_stop_script_of_a_hand_over_is_a_timed_step_of_its_report() -> None:
    [episode] = failover_report.episodes(HANDOVER)
    assert (episode.from_state, episode.to_state) == ("PRIM (Ready)", "SECOND (Ready)")
    assert episode.trigger.outcome == "custom.app asks stopstart"
    text = "\n".join(failover_report.render("web", "node1", episode))
    assert "detected  PRIM (Ready) -> WAIT (Transient): custom.app asks stopstart" in text
    assert "step      ReleaseVip 0.030 s ok" in text
    assert "script    stop_prim 2.500 s ok" in text
    assert text.index("ReleaseVip") < text.index("stop_prim") < text.index("start_second")
