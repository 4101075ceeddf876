"""The gateway's own Prometheus metrics: the HTTP edge and its read cache.

The kit's metrics (:mod:`emporium.kit.metrics`) are those of every service
(gRPC, breakers, health, Kafka, database); these exist only in the gateway.
Same conventions: base units, ``_total`` counters, the ``emporium_`` prefix.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from emporium.kit.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "emporium_http_requests_total",
    "HTTP requests served by the edge, by route template and status",
    ["route", "method", "status"],
)

HTTP_DURATION = Histogram(
    "emporium_http_request_duration_seconds",
    "HTTP request handling time by route template",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

DEGRADED_RESPONSES = Counter(
    "emporium_degraded_responses_total",
    "Responses served without an optional dependency",
    ["route", "dependency"],
)

CACHE_REQUESTS = Counter(
    "emporium_cache_requests_total",
    "Read-cache lookups by result (hit, miss, coalesced)",
    ["cache", "result"],
)
