"""bench/module_outage.py's pure parts: the p50 of the runs, a module's row, the merge into
bench/results/modules.json (bench/modules.py's rows kept) and the log times it reads."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from module_outage import KEY, log_times, markdown_table, merge_section, module_row, p50


def test_p50_is_the_median_of_the_runs() -> None:
    assert p50([3.0, 1.0, 2.0, 10.0, 2.5]) == 2.5
    assert p50([1.0, 2.0]) == 1.5
    with pytest.raises(ValueError, match="no runs"):
        p50([])


def test_module_row_leaves_out_runs_without_a_start_prim_line() -> None:
    row = module_row([4.2, 3.1, 9.9], [1.0, None, 3.0])
    assert row["runs"] == 3
    assert row["outage_p50_s"] == 4.2
    assert row["outage_max_s"] == 9.9
    assert row["start_prim_to_answer_p50_s"] == 2.0
    assert row["start_prim_to_answer_samples_s"] == [1.0, None, 3.0]
    assert module_row([1.0], [None])["start_prim_to_answer_p50_s"] is None


def test_merge_keeps_the_pgbench_rows_and_the_modules_not_measured_again() -> None:
    existing: dict[str, Any] = {
        "benchmark": "modules",
        "runs": {"native": {"pgbench": {"local_tps": 100.0}}},
        KEY: {"modules": {"mirror": {"outage_p50_s": 5.0}}, "skipped": {"cloud_lb_farm": "cloud fake"}},
    }
    merged = merge_section(existing, {"note": "n", "modules": {"nginx_farm": {"outage_p50_s": 1.0}}})
    assert merged["runs"] == existing["runs"]
    assert merged["benchmark"] == "modules"
    assert merged[KEY]["modules"] == {"mirror": {"outage_p50_s": 5.0}, "nginx_farm": {"outage_p50_s": 1.0}}
    assert merged[KEY]["skipped"] == {"cloud_lb_farm": "cloud fake"}
    assert merged[KEY]["note"] == "n"
    assert existing[KEY]["modules"] == {"mirror": {"outage_p50_s": 5.0}}  # not changed in place


def test_a_measured_module_is_no_longer_listed_as_failed_or_skipped() -> None:
    failed = {"failed": {"mirror": "timeout"}, "skipped": {"mirror": "x"}}
    existing: dict[str, Any] = {KEY: {"modules": {}, **failed}}
    merged = merge_section(existing, {"modules": {"mirror": {"outage_p50_s": 4.0}}})
    assert merged[KEY]["failed"] == {}
    assert merged[KEY]["skipped"] == {}
    again = merge_section(merged, {"failed": {"mariadb": "no answer"}})
    assert again[KEY]["modules"] == {"mirror": {"outage_p50_s": 4.0}}
    assert again[KEY]["failed"] == {"mariadb": "no answer"}


def test_log_times_reads_the_marked_lines_after_the_cut() -> None:
    log = (
        "2026-12-06 03:20:00,003 INFO running start_prim WAIT PRIM start\n"
        "2026-12-06 03:20:12,568 INFO ALONE (Transient) -> ALONE (Transient): secondary role stopped\n"
        "2026-12-06 03:20:12,641 INFO running start_prim WAIT ALONE start\n"
        "a continuation line without a time\n"
    )
    cut = datetime(2026, 12, 6, 3, 20, 10).timestamp()
    times = log_times(log, "running start_prim", cut)
    assert len(times) == 1
    assert times[0] - cut == pytest.approx(2.641)


def test_the_table_lists_the_measured_modules_in_order_then_the_skipped() -> None:
    row = {
        **module_row([2.7, 2.6, 2.9], [0.3, 0.4, 0.2]),
        "loadavg_1m_during_runs": [13.2, 15.9],
        "budgets": {"safekitd_rss_mib": 48.1, "safekitd_idle_cpu_percent": 0.5},
    }
    table = markdown_table(
        {"modules": {"nginx_farm": row, "mirror": row}, "skipped": {"cloud_lb_farm": "needs the cloud fake"}}
    )
    lines = table.splitlines()
    assert lines[2] == "| `mirror` | 3 | 2.70 s | 2.90 s | 0.30 s | 13-16 | 48.1 MiB | 0.5 % |"
    assert lines[3].startswith("| `nginx_farm` |")
    assert lines[4] == "| `cloud_lb_farm` | skipped: needs the cloud fake | | | | | | |"
