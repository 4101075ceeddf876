"""The gateway's configuration: defaults from docs/configuration.md, one clear line when wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emporium.gateway.settings import GatewaySettings
from emporium.kit.config import ConfigurationError, downstream, parse_settings

pytestmark = pytest.mark.unit

REQUIRED = {
    "CATALOG_ADDR": "catalog:50051",
    "RECOMMENDATIONS_ADDR": "recommendations:50051",
    "ORDERS_ADDR": "orders:50051",
}


def test_defaults_follow_the_configuration_contract() -> None:
    settings = parse_settings(GatewaySettings, REQUIRED)
    assert settings.http_port == 8080
    assert settings.product_page_budget_ms == 1000
    assert settings.checkout_budget_ms == 3000
    assert settings.cache_ttl_seconds == 5
    budgets = {
        name: downstream(settings, name).timeout_ms
        for name in ("catalog", "recommendations", "orders")
    }
    assert budgets == {"catalog": 800, "recommendations": 250, "orders": 2000}
    recommendations = downstream(settings, "recommendations")
    assert recommendations.addr == "recommendations:50051"
    assert recommendations.breaker_fail_max == 5
    assert recommendations.breaker_reset_seconds == 10


def test_recommendations_are_optional_in_the_system() -> None:
    """A system without the recommendations service: RECOMMENDATIONS_ADDR unset."""
    env = {k: v for k, v in REQUIRED.items() if k != "RECOMMENDATIONS_ADDR"}
    settings = parse_settings(GatewaySettings, env)
    assert settings.recommendations_addr is None
    assert settings.catalog_addr == "catalog:50051"
    assert settings.orders_addr == "orders:50051"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RECOMMENDATIONS_ADDR": "r:1", "ORDERS_ADDR": "o:1"}, "CATALOG_ADDR"),
        ({**REQUIRED, "RECOMMENDATIONS_TIMEOUT_MS": "soon"}, "RECOMMENDATIONS_TIMEOUT_MS"),
        ({**REQUIRED, "HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({**REQUIRED, "CACHE_TTL_SECONDS": "0"}, "CACHE_TTL_SECONDS"),
        # Unset means "no recommendations service"; set but empty is a mistake.
        ({**REQUIRED, "RECOMMENDATIONS_ADDR": ""}, "RECOMMENDATIONS_ADDR"),
    ],
)
def test_wrong_configuration_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        parse_settings(GatewaySettings, env)


def test_the_process_stops_with_one_line_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_ADDR")}
    result = subprocess.run(
        [sys.executable, "-m", "emporium.gateway.main"],
        env={**env, "RECOMMENDATIONS_ADDR": "r:1", "ORDERS_ADDR": "o:1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: CATALOG_ADDR")
