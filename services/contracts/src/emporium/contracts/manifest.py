"""The system manifest (``system.toml`` beside this module): services and topics.

One file names every service, what it calls, what it owns and which topics it
produces and consumes; the services, the local platform, the infrastructure
and the tests read it through :func:`load` (docs/manifest.md).

Standard library only, on purpose: the local platform (``scripts/``, run
before any virtual environment exists) and the infrastructure (``infra/``, its
own project, which cannot install this package) import this very file by
its path, so everyone reads one model with the same checks.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("system.toml")
DLQ_SUFFIX = ".dlq"

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")
_TOPIC_KEY = re.compile(r"^[a-z][a-z0-9-]{1,60}$")
_TOPIC_NAME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.v[0-9]+$")
_SERVICE_KEYS = {"database", "critical", "optional", "produces", "consumes", "ports"}
_OPTIONAL_SERVICE_KEYS = {"consumer_group"}
_TOPIC_KEYS = {"name", "payload", "partitions", "dlq_partitions"}
_PORT_KEYS = {"grpc", "admin", "http"}


class ManifestError(ValueError):
    """The manifest is malformed or inconsistent; the message names the key."""


@dataclass(frozen=True)
class Topic:
    key: str
    name: str
    payload: str
    partitions: int
    dlq_partitions: int

    @property
    def dlq(self) -> str:
        """Its dead-letter twin, where consumers park poison messages."""
        return f"{self.name}{DLQ_SUFFIX}"


@dataclass(frozen=True)
class Ports:
    """The ports of the local runner (a cluster uses 50051, 8081 and 8080)."""

    grpc: int
    admin: int
    http: int | None = None


@dataclass(frozen=True)
class Service:
    name: str
    database: bool
    critical: tuple[str, ...]
    optional: tuple[str, ...]
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    ports: Ports
    consumer_group: str

    @property
    def calls(self) -> tuple[str, ...]:
        """Every service this one calls over gRPC, critical ones first."""
        return self.critical + self.optional

    @property
    def kafka(self) -> bool:
        return bool(self.produces or self.consumes)

    @property
    def serves_http(self) -> bool:
        return self.ports.http is not None


@dataclass(frozen=True)
class Manifest:
    services: Mapping[str, Service]
    topics: Mapping[str, Topic]

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ManifestError(
                f"no service {name!r} in the manifest; one of: {', '.join(self.services)}"
            ) from None

    def topic(self, key: str) -> Topic:
        try:
            return self.topics[key]
        except KeyError:
            raise ManifestError(
                f"no topic {key!r} in the manifest; one of: {', '.join(self.topics)}"
            ) from None

    @property
    def names(self) -> tuple[str, ...]:
        """Service names in start order (each after what it calls)."""
        return tuple(self.services)

    @property
    def data_services(self) -> tuple[str, ...]:
        """Services that own a database (and so a migration, a Secret, a login)."""
        return tuple(s.name for s in self.services.values() if s.database)

    @property
    def kafka_services(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services.values() if s.kafka)

    def topic_names(self, *, dead_letters: bool = True) -> tuple[str, ...]:
        """Every topic name, each followed by its dead-letter twin unless told not to."""
        names: list[str] = []
        for topic in self.topics.values():
            names.append(topic.name)
            if dead_letters:
                names.append(topic.dlq)
        return tuple(names)

    def produced_names(self, service: str) -> tuple[str, ...]:
        """What the service writes: its topics, and the dead-letter twins of what it reads."""
        s = self.service(service)
        own = [self.topics[k].name for k in s.produces]
        return tuple(own + [self.topics[k].dlq for k in s.consumes])

    def consumed_names(self, service: str) -> tuple[str, ...]:
        return tuple(self.topics[k].name for k in self.service(service).consumes)


def parse(data: Mapping[str, Any], where: str = "manifest") -> Manifest:
    """Builds and checks a manifest from parsed TOML; raises ManifestError."""
    unknown = set(data) - {"services", "topics"}
    if unknown:
        raise ManifestError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}")
    topics = {key: _topic(key, raw, where) for key, raw in _table(data, "topics", where).items()}
    services = {
        name: _service(name, raw, where) for name, raw in _table(data, "services", where).items()
    }
    if not services:
        raise ManifestError(f"{where}: [services] is empty")
    manifest = Manifest(services, topics)
    _check(manifest, where)
    return manifest


def load(path: Path | None = None) -> Manifest:
    """The manifest at ``path`` (default: the one shipped beside this module)."""
    path = path or PATH
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: {e}") from None
    return parse(data, str(path))


@cache
def system() -> Manifest:
    """The shipped manifest, read once per process."""
    return load()


def topic_field(key: str) -> Any:
    """A dataclass field holding topic ``key``'s name, looked up when the object is built.

    A service's ``Topics`` declares one per topic it uses, so a test (or a fork
    running two copies side by side) can still pass names of its own.
    """
    return field(default_factory=lambda: system().topic(key).name)


# --- parsing -----------------------------------------------------------------


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: {key} must be a table")
    return value


def _fields(raw: Any, required: set[str], optional: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be a table")
    unknown = set(raw) - required - optional
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    missing = required - set(raw)
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    return dict(raw)


def _int(value: Any, where: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ManifestError(f"{where}: must be an integer from {minimum} to {maximum}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: must be a list of names")
    if len(set(value)) != len(value):
        raise ManifestError(f"{where}: names a service or topic twice")
    return tuple(value)


def _topic(key: str, raw: Any, where: str) -> Topic:
    at = f"{where}: topics.{key}"
    if not _TOPIC_KEY.match(key):
        raise ManifestError(f"{at}: a topic key is lowercase letters, digits and '-'")
    f = _fields(raw, _TOPIC_KEYS, set(), at)
    name, payload = f["name"], f["payload"]
    if not isinstance(name, str) or not _TOPIC_NAME.match(name):
        raise ManifestError(f"{at}.name: {name!r} is not <owner>.<event>.v<N>")
    if not isinstance(payload, str) or payload.count(".") < 2:
        raise ManifestError(f"{at}.payload: a full protobuf message name, e.g. pkg.v1.Message")
    return Topic(
        key,
        name,
        payload,
        _int(f["partitions"], f"{at}.partitions", 1, 1000),
        _int(f["dlq_partitions"], f"{at}.dlq_partitions", 1, 1000),
    )


def _service(name: str, raw: Any, where: str) -> Service:
    at = f"{where}: services.{name}"
    if not _SERVICE_NAME.match(name):
        raise ManifestError(
            f"{at}: a service name is 2 to 31 lowercase letters and digits, starting with a letter"
        )
    f = _fields(raw, _SERVICE_KEYS, _OPTIONAL_SERVICE_KEYS, at)
    if not isinstance(f["database"], bool):
        raise ManifestError(f"{at}.database: must be true or false")
    ports = _fields(f["ports"], {"grpc", "admin"}, _PORT_KEYS - {"grpc", "admin"}, f"{at}.ports")
    group = f.get("consumer_group", name)
    if not isinstance(group, str) or not group:
        raise ManifestError(f"{at}.consumer_group: must be a non-empty string")
    return Service(
        name=name,
        database=f["database"],
        critical=_names(f["critical"], f"{at}.critical"),
        optional=_names(f["optional"], f"{at}.optional"),
        produces=_names(f["produces"], f"{at}.produces"),
        consumes=_names(f["consumes"], f"{at}.consumes"),
        ports=Ports(
            _int(ports["grpc"], f"{at}.ports.grpc", 1024, 32767),
            _int(ports["admin"], f"{at}.ports.admin", 1024, 32767),
            _int(ports["http"], f"{at}.ports.http", 1024, 32767) if "http" in ports else None,
        ),
        consumer_group=group,
    )


# --- consistency ---------------------------------------------------------------


def _check(m: Manifest, where: str) -> None:
    seen_ports: dict[int, str] = {}
    started: set[str] = set()
    for s in m.services.values():
        at = f"{where}: services.{s.name}"
        for kind in ("grpc", "admin", "http"):
            port = getattr(s.ports, kind)
            if port is None:
                continue
            if port in seen_ports:
                raise ManifestError(f"{at}.ports.{kind}: {port} is also {seen_ports[port]}")
            seen_ports[port] = f"services.{s.name}.ports.{kind}"
        both = set(s.critical) & set(s.optional)
        if both:
            raise ManifestError(f"{at}: {', '.join(sorted(both))} both critical and optional")
        for callee in s.calls:
            if callee not in m.services:
                raise ManifestError(f"{at}: calls {callee!r}, which is not a service")
            if callee == s.name:
                raise ManifestError(f"{at}: calls itself")
            if callee not in started:
                raise ManifestError(
                    f"{at}: calls {callee!r}, which must come before it (start order)"
                )
        for kind in ("produces", "consumes"):
            for key in getattr(s, kind):
                if key not in m.topics:
                    raise ManifestError(f"{at}.{kind}: {key!r} is not a topic")
        if s.kafka and not s.database:
            # Nothing acknowledged is lost: producers write an outbox and consumers
            # record processed events in the same transaction as their effect.
            raise ManifestError(f"{at}: uses Kafka, so it needs database = true")
        started.add(s.name)
    names = [t.name for t in m.topics.values()]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: two topics have the same name")
    for topic in m.topics.values():
        producers = [s.name for s in m.services.values() if topic.key in s.produces]
        if len(producers) != 1:
            raise ManifestError(
                f"{where}: topics.{topic.key} must have exactly one producer, has "
                f"{', '.join(producers) or 'none'}"
            )
    groups = [s.consumer_group for s in m.services.values() if s.consumes]
    if len(set(groups)) != len(groups):
        raise ManifestError(f"{where}: two services share a consumer group")
