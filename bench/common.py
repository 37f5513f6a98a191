"""Shared plumbing of the benchmarks: machine facts and writing bench/results/NAME.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load1, 2),
        "loadavg_5m": round(load5, 2),
    }


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_s": round(statistics.median(ordered), 4),
        "max_s": round(ordered[-1], 4),
        "min_s": round(ordered[0], 4),
    }


def settle_deleted_inodes() -> None:
    """Wait until files removed before a benchmark no longer slow the creation of new ones (ADR 0081):
    ext4 without a journal skips free inodes deleted in the last 60 s (360 s while their inode table
    block is dirty), so `sync` first and then wait past the 60 s."""
    os.sync()
    time.sleep(65)


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    result["machine"] = machine()
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
