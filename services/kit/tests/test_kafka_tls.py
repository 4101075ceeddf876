"""The kit's Kafka TLS + SCRAM settings against a real broker with a SASL_SSL listener.

The provisioned environments hand the services ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``,
``KAFKA_SASL_MECHANISM=SCRAM-SHA-512``, a SCRAM user and ``KAFKA_SSL_CA_FILE``
(the cluster CA). This starts a second, throwaway single-node KRaft broker
from the platform's installed Kafka (the platform's own broker is left alone)
with a SASL_SSL listener whose certificate, for ``DNS:localhost`` only, is
signed by a CA generated here, and a SCRAM-SHA-512 user created when its
storage is formatted. It checks that the kit's producer and a consumer built
from the kit's configuration round-trip an event with hostname verification
on, and that an untrusted CA, a wrong password and a host name the
certificate does not carry are each refused with a clear error, within a
bounded time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import emporium_platform
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.kafka import EventProducer, client_config
from emporium.kit.kafka.config import LIBRDKAFKA_LOGGER
from emporium.kit.kafka.producer import KafkaUnavailable
from emporium.testing.pytest_plugin import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

USER = "emporium-tls-test"
PASSWORD = "tls-test-password"
TOPIC = "tls-test.events"
STORE_PASSWORD = "keystore-password"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
# The bounded time a refused connection may take to surface as a failed send.
FAILURE_TIMEOUT_MS = 6_000


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: run make setup")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=Emporium test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _make_keystore(directory: Path, ca: str) -> Path:
    """A PKCS#12 keystore with a server certificate for ``DNS:localhost`` (and no IP)."""
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "server.crt", "-inkey", "server.key",
        "-certfile", f"{ca}.crt", "-name", "localhost", "-out", "server.p12",
        "-passout", f"pass:{STORE_PASSWORD}",
        cwd=directory,
    )  # fmt: skip
    return directory / "server.p12"


def _cluster_id() -> str:
    # As Kafka's Uuid.randomUuid: never one starting with "-" (an option to the tool).
    value = "-"
    while value.startswith("-"):
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return value


@dataclass(frozen=True)
class TlsBroker:
    port: int  # the SASL_SSL listener, advertised as localhost:port
    ca_file: Path  # the CA that signed the broker's certificate
    other_ca_file: Path  # a CA the broker has nothing to do with

    def settings(
        self, *, host: str = "localhost", ca_file: Path | None = None, password: str = PASSWORD
    ) -> KafkaSettings:
        """The settings a provisioned environment gives a service, from the environment."""
        return parse_settings(
            KafkaSettings,
            env={
                "KAFKA_BOOTSTRAP_SERVERS": f"{host}:{self.port}",
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": USER,
                "KAFKA_SASL_PASSWORD": password,
                "KAFKA_SSL_CA_FILE": str(ca_file or self.ca_file),
            },
        )


def _server_properties(root: Path, keystore: Path, ports: dict[str, int]) -> str:
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{ports["controller"]}
listeners=PLAINTEXT://127.0.0.1:{ports["plain"]},SASL_SSL://127.0.0.1:{ports["tls"]},CONTROLLER://127.0.0.1:{ports["controller"]}
advertised.listeners=PLAINTEXT://127.0.0.1:{ports["plain"]},SASL_SSL://localhost:{ports["tls"]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={SCRAM_LOGIN} required;
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={STORE_PASSWORD}
ssl.key.password={STORE_PASSWORD}
ssl.client.auth=none
log.dirs={root / "data"}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
"""


def _ready(bootstrap: str) -> bool:
    try:
        md = emporium_platform.kafka.metadata(bootstrap, timeout=2.0)
    except ConnectionError:
        return False
    return bool(md.brokers) and md.controller_id >= 0


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    s = emporium_platform.settings()
    java = s.java_home / "bin" / "java"
    if not java.exists() or not emporium_platform.kafka.installed(s):
        pytest.fail(f"Kafka {s.kafka_version} or java not installed: run make setup")
    root = Path(tempfile.mkdtemp(prefix="emporium-kafka-tls-"))
    certs = root / "certs"
    certs.mkdir()
    _make_ca(certs, "ca")
    _make_ca(certs, "other-ca")
    keystore = _make_keystore(certs, "ca")
    ports = {"plain": free_port(), "tls": free_port(), "controller": free_port()}
    config = root / "server.properties"
    config.write_text(_server_properties(root, keystore, ports))
    (root / "log4j2.properties").write_text(emporium_platform.kafka.SERVER_LOG4J2.format(logs=root))
    env = {**os.environ, "JAVA_HOME": str(s.java_home)}
    jvm = [str(java), "-Xmx256m", "-Djava.awt.headless=true", "-cp", f"{s.kafka_libs}/*"]
    formatted = subprocess.run(
        [
            *jvm, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={s.kafka_home / 'log4j2-tools.properties'}",
            "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config),
            "--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if formatted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"kafka-storage format failed: {formatted.stdout}{formatted.stderr}")
    with (root / "kafka.out").open("wb") as out:
        broker = subprocess.Popen(
            [
                *jvm, "-Xms64m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
                "kafka.Kafka", str(config),
            ],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    plain = f"127.0.0.1:{ports['plain']}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(plain):
            if broker.poll() is not None or time.monotonic() > deadline:
                log = (root / "kafka.log").read_text() if (root / "kafka.log").exists() else ""
                pytest.fail(f"the TLS test broker did not start:\n{log[-4000:]}")
            time.sleep(0.5)
        admin = AdminClient({"bootstrap.servers": plain})
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
            future.result(timeout=60)
        yield TlsBroker(ports["tls"], certs / "ca.crt", certs / "other-ca.crt")
    finally:
        if broker.poll() is None:
            os.killpg(broker.pid, signal.SIGKILL)
        broker.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _consume_one(settings: KafkaSettings, timeout: float = 60) -> tuple[bytes, bytes]:
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"tls-test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    try:
        consumer.subscribe([TOPIC])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error.str()
                continue
            return message.key() or b"", message.value() or b""
        pytest.fail(f"no message on {TOPIC} within {timeout:.0f}s")
    finally:
        consumer.close()


async def test_round_trips_an_event_over_sasl_ssl_with_the_cluster_ca(
    tls_broker: TlsBroker,
) -> None:
    settings = tls_broker.settings()
    config = client_config(settings)
    assert config["security.protocol"] == "sasl_ssl"
    assert config["ssl.ca.location"] == str(tls_broker.ca_file)
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    producer = EventProducer(settings, client_id="tls-test", request_timeout_ms=30_000)
    await producer.start()
    try:
        delivery = await producer.send(TOPIC, "order-1", b"over TLS and SCRAM")
        assert delivery.topic == TOPIC
        assert await producer.check() == "1 broker(s) reachable"
    finally:
        await producer.stop()
    key, value = await asyncio.to_thread(_consume_one, settings)
    assert (key, value) == (b"order-1", b"over TLS and SCRAM")


REFUSED = [
    pytest.param({"ca": "other"}, "certificate verify failed", id="untrusted-ca"),
    pytest.param({"password": "not-the-password"}, "Authentication failed", id="wrong-password"),
    # The certificate names localhost only: reached at 127.0.0.1 it must be refused.
    pytest.param({"host": "127.0.0.1"}, "certificate verify failed", id="wrong-host-name"),
]


@pytest.mark.parametrize(("change", "reported"), REFUSED)
async def test_refuses_with_a_clear_error_within_the_timeout(
    tls_broker: TlsBroker, change: dict[str, str], reported: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tls_broker.settings(
        host=change.get("host", "localhost"),
        ca_file=tls_broker.other_ca_file if change.get("ca") else None,
        password=change.get("password", PASSWORD),
    )
    producer = EventProducer(
        settings, client_id="tls-test-refused", request_timeout_ms=FAILURE_TIMEOUT_MS
    )
    caplog.set_level(logging.WARNING, logger="emporium.kit.kafka.producer")
    caplog.set_level(logging.WARNING, logger=LIBRDKAFKA_LOGGER)
    await producer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KafkaUnavailable):
            await producer.send(TOPIC, "order-1", b"must not be delivered")
        assert time.monotonic() - started < FAILURE_TIMEOUT_MS / 1000 + 10
    finally:
        await producer.stop()
    errors = [str(getattr(r, "error", "")) for r in caplog.records]
    assert any(reported in error for error in errors), errors
    # librdkafka repeats the failure at every reconnection; the kit logs it once.
    librdkafka_lines = [r.getMessage() for r in caplog.records if r.name == LIBRDKAFKA_LOGGER]
    assert 1 <= len(librdkafka_lines) <= 2, librdkafka_lines


def test_the_host_name_is_all_that_differs_for_the_refused_host(tls_broker: TlsBroker) -> None:
    """At 127.0.0.1 with the same CA, only name verification refuses the broker."""
    settings = tls_broker.settings(host="127.0.0.1")
    client = Producer(client_config(settings, **{"ssl.endpoint.identification.algorithm": "none"}))
    metadata = client.list_topics(timeout=30)
    assert TOPIC in metadata.topics
