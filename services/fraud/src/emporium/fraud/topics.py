"""The Kafka topics fraud reads from and writes to (docs/configuration.md).

One object instead of module constants so that a test (or a fork running two
copies side by side) can give the service its own topic names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    order_placed: str = "orders.order-placed.v1"
    fraud_decision_made: str = "fraud.decision-made.v1"
