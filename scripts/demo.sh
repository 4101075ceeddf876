#!/usr/bin/env bash
# `make demo`: brings the whole system up on the embedded default, runs the
# scripted customer journey through the gateway and reports what happened.
# Exits non-zero if any step failed. The system keeps running afterwards
# (open the storefront URL it prints; `make down` stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python3 scripts/platformctl.py up
uv run --frozen python scripts/demo.py "$@"
