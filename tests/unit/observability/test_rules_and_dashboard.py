"""The shipped Prometheus rules and Grafana dashboard (observability/): promtool (Debian's
prometheus package) validates the rules and runs their unit tests, every query of the dashboard
parses, and every metric either uses is one safekitd really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from safekit.daemon.metrics import Metrics
from safekit.daemon.rfs_figures import ReplicationFigures
from safekit.daemon.witness_probes import WitnessView
from safekit.mirror import WitnessMode
from safekit.rfs import channel

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "observability" / "prometheus" / "safekit-rules.yml"
DASHBOARD = ROOT / "observability" / "grafana" / "safekit-dashboard.json"
RULE_TESTS = Path(__file__).with_name("safekit-rules.test.yml")

PROMETHEUS_OWN = {"up"}
"""Series Prometheus adds itself to every scrape (the dashboard's scrape panel, SafekitNodeDown)."""
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}
"""What Grafana puts in place of its range variables (any valid duration does for parsing)."""
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}
EXPECTED_ALERTS = {
    "SafekitNodeDown",
    "SafekitSecondaryOutOfSync",
    "SafekitHeartbeatNetworkDown",
    "SafekitWitnessUnreachable",
    "SafekitModuleNotReady",
    "SafekitFailover",
    "SafekitPrimaryLost",
    "SafekitReplicationDegraded",
    "SafekitHeartbeatsForged",
    "SafekitScriptFailed",
    "SafekitReplicationNotInSync",
    "SafekitResyncStalled",
    "SafekitReplicationLagging",
    "SafekitAckLatencyHigh",
    "SafekitWitnessAddressUnreachable",
}
EXPECTED_RECORDS = {
    "job_instance_module:safekit_rfs_ack_latency_seconds:p99_5m",
    "job_instance_module:safekit_rfs_ack_latency_seconds:p50_5m",
}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges, grouping clauses, functions (a name before `(`), keywords and numbers are taken out."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group()
        if text[match.end() :].lstrip().startswith("(") or token.lower() in PROMQL_WORDS:
            continue
        names.add(token)
    return names


def test_metric_names_finds_the_selected_series_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(safekit_x_bucket{module=~"a|b"}[5m])))'
        " / on (instance) group_left safekit_y == bool 1e3 unless safekit_z offset 10m or up"
    )
    assert metric_names(expr) == {"safekit_x_bucket", "safekit_y", "safekit_z", "up"}
    assert metric_names('sum(safekit_module_state{state="SECOND"}) by (module) > 0.5') == {
        "safekit_module_state"
    }


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def records() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panels' targets, annotations, variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "definition" and isinstance(value, str):
                match = re.fullmatch(r"label_values\((.+),\s*\w+\)", value)
                assert match, f"unexpected variable query {value!r}"
                yield match.group(1)
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def as_prometheus(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would receive it."""
    for variable, duration in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, duration)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_promtool_finds_nothing_to_lint_in_the_exposition(exposition: str) -> None:
    """Prometheus' own naming checks (counters end in _total, units, no reserved suffixes)."""
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    result = subprocess.run(
        [tool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert "_created" not in exposition


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS) + len(EXPECTED_RECORDS)} rules found" in result.stdout
    assert {rule["alert"] for rule in alerts()} == EXPECTED_ALERTS
    assert {rule["record"] for rule in records()} == EXPECTED_RECORDS


def test_every_alert_tells_what_it_means_and_what_to_do() -> None:
    """A severity for Alertmanager's routes, a summary naming where, a description; the alerts of
    the replication's lag and latency and of the witness per node carry a runbook."""
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert (
            "{{ $labels.instance }}" in rule["annotations"]["summary"] or rule["alert"] == "SafekitNodeDown"
        )
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]
    runbooks = {
        rule["alert"]: rule["annotations"]["description"]
        for rule in alerts()
        if rule["alert"]
        in {"SafekitReplicationLagging", "SafekitAckLatencyHigh", "SafekitWitnessAddressUnreachable"}
    }
    assert len(runbooks) == 3
    for alert, text in runbooks.items():
        assert "Runbook:" in text and "safekit state -v" in text, alert
    documented = (ROOT / "observability" / "README.md").read_text()
    for alert in EXPECTED_ALERTS:
        assert f"`{alert}`" in documented, f"observability/README.md does not explain {alert}"


def test_a_recorded_series_is_recorded_before_an_alert_uses_it() -> None:
    """Rules of a group run in order: an alert that reads a recording rule's series comes after it
    in the same group (else it sees the value of the previous evaluation, or none at first)."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        recorded: set[str] = set()
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            assert used & EXPECTED_RECORDS <= recorded, rule.get("alert") or rule.get("record")
            if "record" in rule:
                assert rule["record"].count(":") == 2, "level:metric:operations"
                recorded.add(rule["record"])
    used_by_alerts = {name for rule in alerts() for name in metric_names(rule["expr"])}
    assert "job_instance_module:safekit_rfs_ack_latency_seconds:p99_5m" in used_by_alerts


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    """safekit-rules.test.yml: a failover, an out-of-sync secondary (and one in sync, and a WAIT
    node), one heartbeat network of two down, the witness down, a stopped vs a waiting module, a
    script's first failure - with the times each alert must and must not be firing."""
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == EXPECTED_ALERTS - {
        "SafekitNodeDown",
        "SafekitPrimaryLost",
        "SafekitReplicationDegraded",
        "SafekitHeartbeatsForged",
    }
    assert "job_instance_module:safekit_rfs_ack_latency_seconds:p99_5m" in RULE_TESTS.read_text()


LATENCY_BOUNDS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]


def native_status(lag: float, counts: list[int]) -> channel.StatusReport:
    """A native primary's `status` answer in sync: its lag and ack latency histogram."""
    stats = {
        "lag_seconds": lag,
        "ack_latency_le": LATENCY_BOUNDS,
        "ack_latency_buckets": counts,
        "ack_latency_count": sum(counts),
        "ack_latency_sum": 0.001 * sum(counts),
    }
    return channel.StatusReport("in_sync", 1, 0, stats)


def scrape(metrics: Metrics) -> dict[str, float]:
    """`series{labels}` -> value of one /metrics scrape, with the labels a scrape of n1 adds."""
    samples = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            labels = {"job": "safekit", "instance": "n1:9010", **sample.labels}
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            samples[f"{sample.name}{{{text}}}"] = sample.value
    return samples


def test_the_new_alerts_fire_on_the_series_safekitd_really_exports(tmp_path: Path) -> None:
    """safekitd's own collectors (daemon/metrics.py) fed as the engine feeds them - a native
    primary 42 s behind whose writes wait 100-250 ms for 2 in 100, a witness address that stops
    answering - scraped twice 1 minute apart; promtool replays the scrapes as series growing at that
    pace and the rules fire exactly the lag, ack latency and witness alerts, with the labels their
    text prints (module, instance, witness)."""
    metrics = Metrics()
    figures = ReplicationFigures()
    figures.started("primary")
    witness = WitnessView.of(WitnessMode.PING, ["198.18.0.9", "198.18.0.10"])
    metrics.add_replication("AM", lambda: figures)
    metrics.add_witness("AM", lambda: witness)
    figures.on_status(native_status(42.0, [0] * 13), 0.0)
    witness.answered("198.18.0.10", 0.0004, now=0.0)
    witness.failed("198.18.0.9", "no answer", now=0.0)
    first = scrape(metrics)
    # one minute later: 1000 writes more, 970 under 10 ms, 10 under 100 ms, 20 under 250 ms
    figures.on_status(native_status(42.0, [0, 0, 0, 0, 0, 970, 0, 0, 10, 20, 0, 0, 0]), 60.0)
    second = scrape(metrics)
    assert set(first) == set(second)
    assert (
        'safekit_witness_reachable{instance="n1:9010",job="safekit",module="AM",witness="198.18.0.9"}'
        in first
    )
    series = [
        {"series": name, "values": f"{first[name]!r}+{second[name] - first[name]!r}x30"}
        for name in sorted(first)
    ]
    firing = {
        ("SafekitReplicationLagging", ()),
        ("SafekitAckLatencyHigh", ()),
        ("SafekitWitnessAddressUnreachable", (("witness", "198.18.0.9"),)),
    }
    expected = [
        {
            "labels": "ALERTS{"
            + ",".join(
                f'{k}="{v}"'
                for k, v in {
                    "alertname": name,
                    "alertstate": "firing",
                    "severity": "warning",
                    "job": "safekit",
                    "instance": "n1:9010",
                    "module": "AM",
                    **dict(extra),
                }.items()
            )
            + "}",
            "value": 1,
        }
        for name, extra in sorted(firing)
    ]
    replay = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {"expr": 'ALERTS{alertstate="firing"}', "eval_time": "1m", "exp_samples": []},
                    {"expr": 'ALERTS{alertstate="firing"}', "eval_time": "16m", "exp_samples": expected},
                ],
            }
        ],
    }
    path = tmp_path / "replay.test.yml"
    path.write_text(yaml.safe_dump(replay))
    result = promtool("test", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_of_the_rules_is_exported(exported_names: set[str]) -> None:
    """Every series a rule reads is one safekitd declares, Prometheus' own `up`, or one recorded
    by this file's recording rules (whose own expressions read exported series only)."""
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    for needed in (
        "safekit_module_transitions_total",
        "safekit_resource_up",
        "safekit_rfs_lag_seconds",
        "safekit_rfs_ack_latency_seconds_bucket",
        "safekit_witness_reachable",
    ):
        assert needed in used, f"no rule reads {needed}"
    assert used - exported_names - PROMETHEUS_OWN - EXPECTED_RECORDS == set()
    for rule in records():
        assert metric_names(rule["expr"]) - exported_names == set(), rule["record"]


def test_every_query_of_the_dashboard_parses_and_uses_exported_metrics(
    exported_names: set[str], tmp_path: Path
) -> None:
    document = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(document))
    assert len(queries) >= 15
    used = {name for query in queries for name in metric_names(query)}
    assert used - exported_names - PROMETHEUS_OWN == set()
    for needed in (
        "safekit_module_state",
        "safekit_module_ready",
        "safekit_heartbeat_rtt_seconds_bucket",
        "safekit_script_duration_seconds_sum",
        "safekit_vip_operation_duration_seconds_sum",
        "safekit_rfs_in_sync",
        "safekit_rfs_sent_bytes_total",
        "safekit_rfs_in_flight_bytes",
        "safekit_rfs_resync_progress_ratio",
        "safekit_rfs_resync_remaining_seconds",
        "safekit_rfs_lag_seconds",
        "safekit_rfs_ack_latency_seconds_bucket",
        "safekit_rfs_ack_latency_seconds_count",
        "safekit_rfs_resync_sent_bytes",
        "safekit_witness_reachable",
        "safekit_witness_rtt_seconds",
        "safekit_witness_probe_failures_total",
    ):
        assert needed in used, f"the dashboard shows no {needed}"
    assert not used & EXPECTED_RECORDS, "the dashboard works without the recording rules"
    # promtool parses each query as the expression of a recording rule.
    check = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": as_prometheus(q)} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(check))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_importable() -> None:
    """What Grafana's import needs: a uid, unique panel ids, a Prometheus datasource variable."""
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and document["title"]
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    # No two panels overlap on Grafana's 24-column grid.
    cells: set[tuple[int, int]] = set()
    for panel in document["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance", "module"} <= set(variables)
