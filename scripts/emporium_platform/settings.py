"""Where things live and which ports they use, resolved from the environment.

Nothing here starts anything; every value is computed from the repository
layout, ``scripts/versions.env`` and the ``EMPORIUM_*`` variables each time a
``Settings`` object is built, so tests can point the runner elsewhere by
setting variables before they call into it.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]

# The system manifest (docs/manifest.md) names the services, their local ports
# and the topics. Its loader is standard library only and is imported by its
# path: scripts/ runs before any virtual environment exists.
MANIFEST_MODULE = REPO / "services" / "contracts" / "src" / "emporium" / "contracts" / "manifest.py"


def _load_manifest_module() -> ModuleType:
    name = "emporium_platform._manifest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MANIFEST_MODULE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the system manifest's loader from {MANIFEST_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


manifest = _load_manifest_module()
SYSTEM = manifest.system()

# Services that own a database (and use Kafka); the gateway owns neither.
DATA_SERVICES: tuple[str, ...] = SYSTEM.data_services
# Start order of `up`: everything a service calls is up before it starts.
SERVICES: tuple[str, ...] = SYSTEM.names

# The local port table of docs/configuration.md.
SERVICE_PORTS: dict[str, dict[str, int]] = {
    s.name: {
        "GRPC_PORT": s.ports.grpc,
        "ADMIN_PORT": s.ports.admin,
        **({"HTTP_PORT": s.ports.http} if s.ports.http is not None else {}),
    }
    for s in SYSTEM.services.values()
}

# Topic name -> partitions, each followed by its `.dlq` twin.
EVENT_TOPICS: dict[str, int] = {t.name: t.partitions for t in SYSTEM.topics.values()}
TOPICS: dict[str, int] = {
    name: partitions
    for t in SYSTEM.topics.values()
    for name, partitions in ((t.name, t.partitions), (t.dlq, t.dlq_partitions))
}

DEFAULT_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


def read_versions(path: Path | None = None) -> dict[str, str]:
    """Parses scripts/versions.env (VAR=value lines, # comments)."""
    path = path or REPO / "scripts" / "versions.env"
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("\"'")
    return values


@dataclass(frozen=True)
class Settings:
    repo: Path
    state_dir: Path
    cache_dir: Path
    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    kafka_version: str
    log4j_version: str
    maven_dependency_plugin_version: str
    postgres_major: str
    java_home: Path
    kafka_heap: str
    # Existing servers instead of local ones (empty: start our own).
    external_postgres_url: str
    external_kafka_bootstrap: str

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        versions = read_versions()
        state = Path(env.get("EMPORIUM_STATE_DIR") or REPO / ".run").resolve()
        kafka_port = int(env.get("EMPORIUM_KAFKA_PORT", "29092"))
        return cls(
            repo=REPO,
            state_dir=state,
            cache_dir=Path(env.get("EMPORIUM_CACHE_DIR") or REPO / ".cache").resolve(),
            pg_port=int(env.get("EMPORIUM_PG_PORT", "25432")),
            kafka_port=kafka_port,
            kafka_controller_port=int(env.get("EMPORIUM_KAFKA_CONTROLLER_PORT", "29093")),
            kafka_version=versions["KAFKA_VERSION"],
            log4j_version=versions["KAFKA_LOG4J_VERSION"],
            maven_dependency_plugin_version=versions["MAVEN_DEPENDENCY_PLUGIN_VERSION"],
            postgres_major=versions["POSTGRES_MAJOR"],
            java_home=Path(env.get("EMPORIUM_JAVA_HOME") or DEFAULT_JAVA_HOME),
            kafka_heap=env.get("EMPORIUM_KAFKA_HEAP", "512m"),
            external_postgres_url=env.get("EMPORIUM_POSTGRES_ADMIN_URL", ""),
            external_kafka_bootstrap=env.get("EMPORIUM_KAFKA_BOOTSTRAP", ""),
        )

    # --- layout under the state directory -------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def pg_data(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_socket_dir(self) -> Path:
        return self.state_dir / "pgsock"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_home(self) -> Path:
        return self.cache_dir / f"kafka-{self.kafka_version}"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_home / "libs"

    @property
    def local_postgres(self) -> bool:
        return not self.external_postgres_url

    @property
    def local_kafka(self) -> bool:
        return not self.external_kafka_bootstrap

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def ensure_dirs(self) -> None:
        for d in (self.state_dir, self.logs_dir, self.pids_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def secret(settings: Settings, name: str) -> str:
    """Returns the password stored under .run/secrets/<name>, creating it once."""
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = settings.secrets_dir / f"{name}.password"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another runner created it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
