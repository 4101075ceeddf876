"""Typed settings from environment variables, validated once at start-up.

A service declares one settings class that inherits the mixins it needs and
loads it with :func:`load_settings`. A missing or malformed variable stops the
process with exit status 2 and one line naming the variable.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_ERROR_EXIT_CODE = 2


class ConfigurationError(Exception):
    """Raised by :func:`parse_settings` with one message naming the variable."""


class ServiceSettings(BaseSettings):
    """Settings every service has (see docs/configuration.md)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    environment: Literal["local", "dev", "staging", "prod", "test"] = "local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    bind_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    admin_port: int = Field(default=8081, ge=1, le=65535)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    health_check_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    otel_service_name: str | None = None
    otel_traces_exporter: Literal["otlp", "console", "none"] = "none"
    otel_exporter_otlp_endpoint: str | None = None
    #: Share of successful requests whose access line is written (by trace id); 1 = all.
    access_log_sample_rate: float = Field(default=0.01, ge=0, le=1)
    #: A success at least this slow is always logged.
    access_log_slow_ms: float = Field(default=100.0, ge=0, le=600_000)
    #: At least one success line per method (or route) this often; 0 = only sampled ones.
    access_log_interval_seconds: float = Field(default=1.0, ge=0, le=3600)
    #: RPCs a gRPC server runs at once; more are refused at once with RESOURCE_EXHAUSTED.
    grpc_max_concurrent_rpcs: int = Field(default=64, ge=1, le=100_000)


class DatabaseSettings(BaseSettings):
    """Mixin for services that own a PostgreSQL database."""

    database_url: SecretStr
    database_pool_min_size: int = Field(default=1, ge=0, le=100)
    database_pool_max_size: int = Field(default=10, ge=1, le=200)
    database_migrate_on_start: bool = False
    #: A CLIENT span per SQL statement inside traced work (docs/observability.md).
    database_trace_queries: bool = True

    @model_validator(mode="after")
    def _check_database(self) -> DatabaseSettings:
        url = self.database_url.get_secret_value()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL: must start with postgresql://")
        if self.database_pool_min_size > self.database_pool_max_size:
            raise ValueError("DATABASE_POOL_MIN_SIZE: must not exceed DATABASE_POOL_MAX_SIZE")
        return self


class KafkaSettings(BaseSettings):
    """Mixin for services that produce or consume Kafka events."""

    kafka_bootstrap_servers: str
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: str | None = None
    kafka_consumer_group: str | None = None
    kafka_max_delivery_attempts: int = Field(default=5, ge=1, le=100)
    kafka_commit_interval_ms: int = Field(default=1000, ge=0, le=60_000)

    @model_validator(mode="after")
    def _check_kafka(self) -> KafkaSettings:
        if not self.kafka_bootstrap_servers.strip():
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS: must not be empty")
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME: required (with KAFKA_SASL_PASSWORD) when "
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        return self


class Downstream(BaseModel):
    """Where a downstream gRPC service is and how much time a call may take."""

    name: str
    addr: str
    timeout_ms: int
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 10.0


def downstream(settings: BaseSettings, name: str) -> Downstream:
    """Collects the ``<NAME>_ADDR``/``_TIMEOUT_MS``/``_BREAKER_*`` fields of one downstream.

    The service's settings class declares them as plain fields (``catalog_addr``,
    ``catalog_timeout_ms``...), so they are validated with everything else.
    """
    values = {
        key.removeprefix(f"{name}_"): getattr(settings, key)
        for key in type(settings).model_fields
        if key.startswith(f"{name}_")
    }
    return Downstream(name=name, **values)


S = TypeVar("S", bound=BaseSettings)


def _describe(error: ValidationError) -> str:
    """One line naming every variable that is missing or wrong."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        # Model-level validators already start their message with the variable name.
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def parse_settings(cls: type[S], env: dict[str, str] | None = None) -> S:
    """Builds settings from ``env`` (or the process environment)."""
    try:
        if env is None:
            return cls()
        # _env_file=None and explicit values keep tests independent of os.environ.
        fields = {key.upper(): key for key in cls.model_fields}
        values = {fields[key.upper()]: value for key, value in env.items() if key.upper() in fields}
        return cls.model_validate(values)
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None


def load_settings(cls: type[S]) -> S:
    """Loads settings or exits with status 2 and one line naming the variable."""
    try:
        return parse_settings(cls)
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(CONFIG_ERROR_EXIT_CODE) from None
