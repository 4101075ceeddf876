import subprocess
import sys

import pytest
from pydantic import SecretStr

from emporium.kit.config import (
    ConfigurationError,
    DatabaseSettings,
    KafkaSettings,
    ServiceSettings,
    downstream,
    parse_settings,
)

pytestmark = pytest.mark.unit


class ExampleSettings(ServiceSettings, DatabaseSettings, KafkaSettings):
    catalog_addr: str
    catalog_timeout_ms: int = 800
    catalog_breaker_fail_max: int = 5


VALID = {
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "CATALOG_ADDR": "127.0.0.1:50051",
}


def test_valid_environment_gives_typed_settings() -> None:
    settings = parse_settings(ExampleSettings, {**VALID, "GRPC_PORT": "6000"})
    assert settings.grpc_port == 6000
    assert isinstance(settings.database_url, SecretStr)
    assert "p@" not in repr(settings)  # secrets never printed
    assert downstream(settings, "catalog").model_dump() == {
        "name": "catalog",
        "addr": "127.0.0.1:50051",
        "timeout_ms": 800,
        "breaker_fail_max": 5,
        "breaker_reset_seconds": 10.0,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"DATABASE_URL": None}, "DATABASE_URL: Field required"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: must start with postgresql://"),
        ({"GRPC_PORT": "http"}, "GRPC_PORT: Input should be a valid integer"),
        ({"GRPC_PORT": "70000"}, "GRPC_PORT: Input should be less than or equal to 65535"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: Input should be"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME: required"),
        ({"CATALOG_ADDR": None, "KAFKA_BOOTSTRAP_SERVERS": None}, "KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_errors_name_the_variable(change: dict[str, str | None], expected: str) -> None:
    env = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(ConfigurationError) as error:
        parse_settings(ExampleSettings, env)
    assert expected in str(error.value)


def test_missing_variables_are_all_named_in_one_line() -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_settings(ExampleSettings, {})
    message = str(error.value)
    assert "\n" not in message
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "CATALOG_ADDR"):
        assert f"{name}: Field required" in message


def test_load_settings_exits_2_with_one_line() -> None:
    program = (
        "from emporium.kit.config import ServiceSettings, DatabaseSettings, load_settings\n"
        "class S(ServiceSettings, DatabaseSettings): pass\n"
        "load_settings(S)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={"PATH": "/usr/bin:/bin", "ADMIN_PORT": "-1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert "ADMIN_PORT" in lines[0]
    assert "DATABASE_URL" in lines[0]
