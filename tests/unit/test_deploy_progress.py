"""`safekit deploy`: ansible-runner events to progress lines and the final summary (no Ansible run)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from safekit import deploy
from safekit.deploy import HostCounts, Progress, apply_event, parse_extra_vars, summary_lines


def event(kind: str, stdout: str = "", **data: Any) -> dict[str, Any]:
    return {"event": kind, "stdout": stdout, "event_data": data}


def feed(*events: dict[str, Any]) -> tuple[Progress, list[str]]:
    progress, shown = Progress(), []
    for e in events:
        progress, lines = apply_event(progress, e)
        shown.extend(lines)
    return progress, shown


def test_a_task_is_one_line_when_it_starts_and_each_host_result_one_line() -> None:
    progress, lines = feed(
        event("playbook_on_start"),
        event("playbook_on_play_start", play="Deploy the mirror cluster"),
        # ansible-runner: the role's short name, and its FQCN when the role is a collection's
        event(
            "playbook_on_task_start", task="Install the engine", role="node", resolved_role="safekit.ha.node"
        ),
        event("runner_on_start", host="node1"),
        event("runner_on_ok", host="node1", res={"changed": True}),
        event("runner_on_ok", host="node2", res={"changed": False}),
        event("playbook_on_task_start", task="Check", role=None),
        event("runner_on_skipped", host="node2"),
    )
    assert lines == [
        "PLAY Deploy the mirror cluster",
        "TASK safekit.ha.node : Install the engine",
        "  node1: changed",
        "  node2: ok",
        "TASK Check",
        "  node2: skipped",
    ]
    assert progress.hosts == {
        "node1": HostCounts(ok=1, changed=1),
        "node2": HostCounts(ok=1, skipped=1),
    }
    assert progress.failed_hosts() == []


def test_failures_show_the_message_and_count_unless_ignored() -> None:
    progress, lines = feed(
        event("runner_on_failed", host="node1", res={"msg": "no  such\nfile"}),
        event("runner_on_failed", host="node2", res={"msg": "meh"}, ignore_errors=True),
        event("runner_on_unreachable", host="witness", res={"msg": "ssh: timed out"}),
    )
    assert lines == [
        "  node1: FAILED: no such file",
        "  node2: failed (ignored): meh",
        "  witness: UNREACHABLE: ssh: timed out",
    ]
    assert progress.hosts["node1"].failed == 1
    assert progress.hosts["node2"] == HostCounts(ok=1)
    assert progress.failed_hosts() == ["node1", "witness"]


def test_a_long_message_is_cut_to_one_short_line() -> None:
    _, lines = feed(event("runner_on_failed", host="n", res={"msg": "x" * 5000}))
    assert len(lines[0]) < deploy.MESSAGE_MAX + 20 and lines[0].endswith("...")


def test_a_no_log_result_is_never_shown_and_changed_comes_from_ansibles_own_line() -> None:
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}
    _, lines = feed(
        event("runner_on_ok", "\x1b[0;33mchanged: [node1]\x1b[0m", host="node1", res=censored),
        event("runner_on_ok", "ok: [node2]", host="node2", res=censored),
        event("runner_on_failed", "fatal: [node2]: FAILED! => {censored}", host="node2", res=censored),
    )
    assert lines[:2] == ["  node1: changed", "  node2: ok"]
    assert lines[2].startswith("  node2: FAILED")
    assert "cluster" not in " ".join(lines)


def test_the_recap_is_authoritative_for_the_summary() -> None:
    progress, lines = feed(
        event("runner_on_ok", host="node1", res={"changed": True}),
        event(
            "playbook_on_stats",
            ok={"node1": 17, "node2": 14},
            changed={"node1": 7, "node2": 6},
            failures={"node2": 1},
            dark={},
            processed={"node1": 1, "node2": 1},
        ),
    )
    assert lines == ["  node1: changed"]  # the recap itself shows nothing: the summary does
    assert progress.final() == {
        "node1": HostCounts(ok=17, changed=7),
        "node2": HostCounts(ok=14, changed=6, failed=1),
    }
    assert summary_lines(progress, 63.04) == [
        "SUMMARY",
        "  node1  ok=17 changed=7 failed=0 unreachable=0",
        "  node2  ok=14 changed=6 failed=1 unreachable=0",
        "total time 63.0 s: FAILED on node2",
    ]


def test_summary_of_a_clean_run() -> None:
    progress, _ = feed(
        event("playbook_on_stats", ok={"node1": 3, "node10": 2}, changed={}, failures={}, dark={}),
    )
    assert summary_lines(progress, 9.96) == [
        "SUMMARY",
        "  node1   ok=3 changed=0 failed=0 unreachable=0",
        "  node10  ok=2 changed=0 failed=0 unreachable=0",
        "total time 10.0 s: ok on 2 hosts",
    ]


def test_ansible_errors_are_shown_other_text_and_unknown_events_are_not() -> None:
    _, lines = feed(
        event("verbose", "ERROR! the playbook: x.yml could not be found"),
        event("verbose", "PLAY RECAP ****"),
        event("runner_item_on_ok", host="node1", res={"changed": True}),
        event("something_new"),
        event("playbook_on_no_hosts_matched"),
    )
    assert lines == [
        "ERROR! the playbook: x.yml could not be found",
        "  no hosts matched: check the inventory's groups (safekit_nodes)",
    ]


def test_extra_vars_are_key_value_pairs() -> None:
    assert parse_extra_vars(["safekit_web_port=8081", "a=b=c", "empty="]) == {
        "safekit_web_port": "8081",
        "a": "b=c",
        "empty": "",
    }
    with pytest.raises(deploy.DeployError, match="KEY=VALUE"):
        parse_extra_vars(["novalue"])
    with pytest.raises(deploy.DeployError, match="KEY=VALUE"):
        parse_extra_vars(["1abc=2"])


def test_every_kind_has_its_playbook() -> None:
    root = deploy.project_root()
    assert set(deploy.PLAYBOOKS) == {"mirror", "farm"}
    for kind, name in deploy.PLAYBOOKS.items():
        assert (root / "playbooks" / name).is_file(), f"safekit deploy {kind}: playbooks/{name} is missing"


def test_a_missing_inventory_is_refused_before_ansible_runs(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(kind="mirror", inventory="/nonexistent/inv.yml", extra_vars=[], check=False)
    assert deploy.run(args) == 1
    assert "inventory /nonexistent/inv.yml: no such file or directory" in capsys.readouterr().err


def test_no_playbooks_directory_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    fake = tmp_path / "site-packages" / "safekit" / "__init__.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    monkeypatch.setattr(deploy.safekit, "__file__", str(fake))
    with pytest.raises(deploy.DeployError, match="no playbooks/ directory"):
        deploy.project_root()
