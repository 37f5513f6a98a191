"""The static security scan: checkov, from its own virtualenv (scripts/checkov-venv.sh, which
`make test` runs), over every configuration in terraform/. Each finding is fixed or suppressed
in the .tf file with `#checkov:skip=ID:reason`, and a reason is required."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from terraform_offline import ROOT, TERRAFORM, tf_files

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def _checkov(directory: Path) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov-venv` (or scripts/checkov-venv.sh)")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        # no telemetry, no update check, no platform: everything stays on this machine
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert proc.returncode in (0, 1), f"checkov failed to run ({proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout) if proc.stdout.strip() else []
    return report if isinstance(report, list) else [report]


def test_checkov_finds_nothing_unsuppressed() -> None:
    reports = _checkov(TERRAFORM)
    assert reports, "checkov scanned nothing"
    failed = [
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 100, summary  # every cloud, both examples
    assert summary["passed"] > 200, summary


def test_checkov_catches_an_open_ssh_rule(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'resource "aws_security_group" "bad" {\n  name = "bad"\n  ingress {\n    from_port   = 22\n'
        '    to_port     = 22\n    protocol    = "tcp"\n    cidr_blocks = ["0.0.0.0/0"]\n  }\n}\n'
    )
    failed = {f["check_id"] for r in _checkov(tmp_path) for f in r["results"]["failed_checks"]}
    assert "CKV_AWS_24" in failed, failed


def test_every_suppression_says_why() -> None:
    count = 0
    for path in tf_files():
        for line in path.read_text().splitlines():
            match = SKIP.search(line)
            if match:
                count += 1
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 30, f"{path}: checkov:skip={match.group(1)} needs a written reason"
    assert count > 0
