"""Metrics only orders exposes (the kit's are in ``emporium.kit.metrics``)."""

from __future__ import annotations

from prometheus_client import Histogram

ORDER_DECISION_DELAY = Histogram(
    "emporium_order_decision_delay_seconds",
    "Time from an order being placed to its fraud decision being applied (the freshness SLI)",
    ["decision"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
