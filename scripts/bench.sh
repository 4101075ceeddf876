#!/usr/bin/env bash
# `make bench`: brings the system up and prints the benchmarks' figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python3 scripts/platformctl.py up
echo; echo "== latency of the product page and checkout (bench/latency.py)"
uv run --frozen python bench/latency.py "$@"
echo; echo "== cost of tracing on the product page (bench/product_page.py)"
uv run --frozen python bench/product_page.py
echo; echo "== cost of the kit per call: kit vs bare grpc.aio server, interleaved (bench/kit_vs_bare.py)"
uv run --frozen python bench/kit_vs_bare.py
echo; echo "== open-loop load: product page and checkout at fixed rates (bench/load.py)"
uv run --frozen python bench/load.py --pages 50,100,300,600 --checkouts 20,50
echo; echo "== event path: outbox relay and fraud's consumer, events/s (bench/event_path.py)"
uv run --frozen python bench/event_path.py relay --events 20000
uv run --frozen python bench/event_path.py consumer --events 20000
echo; echo "== checkout -> fraud decision at fixed open-loop rates (bench/decision_latency.py)"
uv run --frozen python bench/decision_latency.py --rates 20,50,100 --seconds 20
echo; echo "== CPU per database operation, asyncio and uvloop side by side (bench/db_cost.py)"
uv run --frozen python bench/db_cost.py
