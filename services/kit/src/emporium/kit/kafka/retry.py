"""The backoff shared by the producer's callers, the consumer and the outbox relay."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: attempt 1 waits about ``base``."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))
