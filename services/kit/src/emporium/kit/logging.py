"""JSON log lines on stdout with service, level, trace id and span id.

Every line written while a span is current carries that span's ids, so a log
line found in Loki leads to its trace in Tempo and back.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

# Attributes every LogRecord has; anything else passed through ``extra=`` is
# written as a field of its own.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, environment: str) -> None:
        super().__init__()
        self._service = service
        self._environment = environment

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "environment": self._environment,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", environment: str = "local") -> None:
    """Routes every logger (ours and the libraries') to one JSON handler on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, environment))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO.
    for name in ("emporium.kit.kafka.librdkafka", "uvicorn.access", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


_NEVER = float("-inf")


class AccessLogSampler:
    """Which successful requests get an access log line (failures always do).

    A success is logged when it is slow (``slow_seconds`` or more), when its
    trace is in the sampled share (``rate``, decided on the trace id, so every
    service logs the same traces: a sampled request can be followed hop by
    hop), or when no line was written for its method or route in the last
    ``interval_seconds`` (a quiet service logs every call; a busy one writes
    at least one line per second and method). The next line written for a
    method carries ``sampled_out``: how many successes were left out since the
    previous one, so counts can still be read from the log.

    ``rate=1`` logs every success. Settings: ``ACCESS_LOG_SAMPLE_RATE``,
    ``ACCESS_LOG_SLOW_MS``, ``ACCESS_LOG_INTERVAL_SECONDS``.
    """

    _TRACE_ID_SPACE = 1 << 64

    def __init__(
        self,
        rate: float = 0.01,
        slow_seconds: float = 0.1,
        interval_seconds: float = 1.0,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        self.rate = rate
        self.slow_seconds = slow_seconds
        self.interval_seconds = interval_seconds
        self._threshold = int(rate * self._TRACE_ID_SPACE)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> AccessLogSampler:
        return cls(
            rate=settings.access_log_sample_rate,
            slow_seconds=settings.access_log_slow_ms / 1000,
            interval_seconds=settings.access_log_interval_seconds,
        )

    def decide(self, key: str, elapsed: float, trace_id: int = 0) -> int | None:
        """None: leave this success out; else the number left out before it (0 or more)."""
        now = self._clock()
        if not (
            self.rate >= 1
            or elapsed >= self.slow_seconds
            # The low 64 bits of a W3C trace id are random (as OpenTelemetry's ratio sampler).
            or (trace_id and (trace_id & (self._TRACE_ID_SPACE - 1)) < self._threshold)
            or (
                self.interval_seconds > 0
                and now - self._last.get(key, _NEVER) >= self.interval_seconds
            )
        ):
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._skipped.pop(key, 0)
