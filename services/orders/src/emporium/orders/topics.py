"""The Kafka topics orders writes to and reads from, named by the system manifest.

The names come from ``system.toml`` (docs/manifest.md), looked up by topic key
when a ``Topics`` is built. One object instead of module constants so that a
test (or a fork running two copies side by side) can give a service its own
topic names.
"""

from __future__ import annotations

from dataclasses import dataclass

from emporium.contracts import manifest


@dataclass(frozen=True)
class Topics:
    order_placed: str = manifest.topic_field("order-placed")
    order_status_changed: str = manifest.topic_field("order-status-changed")
    fraud_decision_made: str = manifest.topic_field("fraud-decision-made")
