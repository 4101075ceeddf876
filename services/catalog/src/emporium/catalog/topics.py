"""The Kafka topics the catalog reads from, named by the system manifest.

The names come from ``system.toml`` (docs/manifest.md), looked up by topic key
when a ``Topics`` is built. One object instead of module constants so that a
test (or a fork running two copies side by side) can give the service its own
topic names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emporium.contracts import manifest


def _name(key: str) -> str:
    return manifest.system().topic(key).name


@dataclass(frozen=True)
class Topics:
    order_status_changed: str = field(default_factory=lambda: _name("order-status-changed"))
