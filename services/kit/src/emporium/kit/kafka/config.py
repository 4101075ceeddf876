"""The one mapping from the ``KAFKA_*`` settings to a librdkafka configuration.

Every producer, consumer and admin client of the kit (and of the tests and
benchmarks) is built from :func:`client_config`, so the security settings
mean the same everywhere:

=========================  ==============================================
setting                    librdkafka property
=========================  ==============================================
KAFKA_BOOTSTRAP_SERVERS    ``bootstrap.servers``
KAFKA_SECURITY_PROTOCOL    ``security.protocol`` (lower case)
KAFKA_SASL_MECHANISM       ``sasl.mechanism`` (with SASL_PLAINTEXT/SASL_SSL)
KAFKA_SASL_USERNAME        ``sasl.username``
KAFKA_SASL_PASSWORD        ``sasl.password``
KAFKA_SSL_CA_FILE          ``ssl.ca.location`` (else ``probe``: the system's CAs)
=========================  ==============================================

With SSL or SASL_SSL the broker's certificate must name the host it was
reached at (``ssl.endpoint.identification.algorithm=https``, librdkafka's
default, set explicitly so it cannot be lost by a merge of options).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from emporium.kit.config import KafkaSettings

#: librdkafka's own log lines (connection refused, broker down...) go to this logger.
LIBRDKAFKA_LOGGER = "emporium.kit.kafka.librdkafka"


_ATTEMPT_TAIL = re.compile(r"\s*\(after \d+ms in state [A-Z_]+[^)]*\)")


class _Repeats(logging.Filter):
    """Lets one librdkafka line through per ``interval`` seconds for the same text.

    While a broker is down librdkafka logs the same refused connection several
    times a second per client; one line every 30 s says as much. librdkafka
    ends such a line with how long the attempt took (``(after 3ms in state
    SSL_HANDSHAKE, 4 identical error(s) suppressed)``): that tail is not part
    of what makes two lines the same.
    """

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        # "FAIL [client#producer-1] [thrd:host:port/bootstrap]: ..." without the client's name.
        key = _ATTEMPT_TAIL.sub("", text.split("]", 1)[-1])
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self._interval:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


_librdkafka_log = logging.getLogger(LIBRDKAFKA_LOGGER)
_librdkafka_log.addFilter(_Repeats())


def client_config(settings: KafkaSettings, **properties: Any) -> dict[str, Any]:
    """librdkafka properties for the connection and security settings, plus ``properties``.

    ``properties`` use librdkafka's dotted names, passed as a mapping:
    ``client_config(settings, **{"client.id": "fraud"})``.
    """
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": protocol.lower(),
        "logger": _librdkafka_log,
    }
    if protocol in ("SSL", "SASL_SSL"):
        ca_file = settings.kafka_ssl_ca_file
        if ca_file and not Path(ca_file).is_file():
            raise FileNotFoundError(f"KAFKA_SSL_CA_FILE: no such file: {ca_file}")
        config["ssl.ca.location"] = ca_file or "probe"
        config["ssl.endpoint.identification.algorithm"] = "https"
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    config.update(properties)
    return config
