"""safekitd's memory under console traffic: many browser-like sessions (login, the views the
console polls, its live event stream, logout) against one node leave its resident memory flat after
a warm-up, and within the 80 MiB budget (docs/api.md, "Memory")."""

from __future__ import annotations

import time

from conftest import ApiLab, console_sessions, rss_kib

WARMUP = 4
SESSIONS = 32
"""Run 4 at a time, so every worker thread of the API takes part (one thread would hide a
per-thread cost)."""
GROWTH_MIB = 4.0
"""Allowed growth after the warm-up. Before the fix (docs/api.md, "Memory") each worker thread
that ran a login kept scrypt's 16 MiB resident: 115 MiB after 8 sessions, +33 MiB over 48 more."""
BUDGET_MIB = 80.0


def test_console_sessions_leave_safekitd_memory_flat(api_lab: ApiLab) -> None:
    node = "node1"
    start = rss_kib(api_lab, node)
    console_sessions(api_lab, node, WARMUP)
    before = rss_kib(api_lab, node)
    started = time.monotonic()
    console_sessions(api_lab, node, SESSIONS)
    after = rss_kib(api_lab, node)
    growth = (after - before) / 1024
    print(
        f"safekitd RSS on {node}: {start / 1024:.1f} MiB, {before / 1024:.1f} MiB after {WARMUP} "
        f"sessions, {after / 1024:.1f} MiB after {SESSIONS} more ({growth:+.1f} MiB, "
        f"{time.monotonic() - started:.0f} s)"
    )
    assert growth <= GROWTH_MIB, f"{node}: safekitd grew {growth:.1f} MiB over {SESSIONS} console sessions"
    for name in api_lab.cluster.nodes:
        rss = rss_kib(api_lab, name) / 1024
        assert rss <= BUDGET_MIB, f"{name}: safekitd uses {rss:.1f} MiB after console sessions (budget 80)"
