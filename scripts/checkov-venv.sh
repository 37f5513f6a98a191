#!/usr/bin/env bash
# Build (once) the virtualenv that holds checkov, apart from .venv: checkov pins its own versions of
# many libraries (boto3, jsonschema, packaging, ...) that would fight the engine's and its tools'.
# Idempotent: a stamp file records the requirement it was built for; a second run does nothing.
# Used by `make checkov-venv` (and so `make test`) and by tests/unit/terraform/test_checkov.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${CHECKOV_VENV:-.venv-checkov}"
# One exact version: a scan's findings change with checkov's rules, and the suppressions in
# terraform/ are written against this version's check ids.
REQUIREMENT="checkov==3.3.30"
STAMP="$VENV/.installed"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQUIREMENT" ] && [ -x "$VENV/bin/checkov" ]; then
    touch "$STAMP"  # newer than this script: make's target is up to date
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# Keep the venv out of git without touching the project's .gitignore (as Python 3.13's venv does).
echo "*" > "$VENV/.gitignore"
"$VENV/bin/pip" install -q --upgrade "pip>=24"
"$VENV/bin/pip" install -q "$REQUIREMENT"
echo "$REQUIREMENT" > "$STAMP"
