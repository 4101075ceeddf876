"""The kit's database pool over verified TLS, against a real PostgreSQL server.

The provisioned environments hand the services a DATABASE_URL with
``sslmode=verify-full`` and ``sslrootcert=<the cluster CA>`` (docs/deploy.md):
libpq reads both from the URL, so the kit needs no setting of its own. This
starts a throwaway server with ``ssl = on`` and a certificate for a
CloudNativePG-like host name, signed by a CA generated here, and checks that
the kit connects with verify-full, and that an untrusted CA or another host
name is refused with a clear error while readiness reports the database down.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emporium.kit.db import Database, DatabaseUnavailable, connect
from emporium.kit.health import HealthRegistry
from emporium.testing.pytest_plugin import free_port

pytestmark = pytest.mark.integration

# The name CloudNativePG's server certificate carries for the read-write service.
SERVER_NAME = "catalog-db-rw.emporium-dev-data.svc"
PASSWORD = "tls-test-password"


def _postgres_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3])
    )
    if not found:
        pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql): run make setup")
    return Path(found[-1]).parent


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


def _make_server_cert(directory: Path, ca: str, dns_name: str) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={dns_name}",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca_file: Path  # the CA that signed the server certificate
    other_ca_file: Path  # a CA the server has nothing to do with

    def url(self, *, host: str = SERVER_NAME, ca_file: Path | None = None) -> str:
        """A DATABASE_URL of the shape the infrastructure writes (verify-full, CA file).

        ``hostaddr`` connects to the loopback address while libpq checks the
        certificate against ``host``, the name a service uses in the cluster.
        """
        query = urllib.parse.urlencode(
            {
                "sslmode": "verify-full",
                "sslrootcert": str(ca_file or self.ca_file),
                "hostaddr": "127.0.0.1",
            }
        )
        return f"postgresql://postgres:{PASSWORD}@{host}:{self.port}/postgres?{query}"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    binaries = _postgres_bin()
    # The server refuses to run as root; the platform runs it as `postgres` too.
    user = "postgres" if os.geteuid() == 0 else None
    owner = pwd.getpwnam(user) if user else None
    root = Path(tempfile.mkdtemp(prefix="emporium-pg-tls-"))
    certs, data = root / "certs", root / "data"
    certs.mkdir()
    _make_ca(certs, "ca")
    _make_ca(certs, "other-ca")
    _make_server_cert(certs, "ca", SERVER_NAME)
    for path in (root, certs, *certs.iterdir()):
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o755)
    os.chmod(certs, 0o755)
    os.chmod(certs / "server.key", 0o600)
    (certs / "ca.key").unlink()
    (certs / "other-ca.key").unlink()
    pwfile = certs / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "LC_ALL": "C.UTF-8"}
    port = free_port()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], user=user, env=env, capture_output=True, text=True, timeout=120
        )

    result = run(
        binaries / "initdb", "-D", data, "-U", "postgres", f"--pwfile={pwfile}",
        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
    )  # fmt: skip
    pwfile.unlink()
    if result.returncode != 0:
        pytest.fail(f"initdb failed: {result.stderr}")
    # TLS only: a connection without it is rejected by pg_hba, not just unused.
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\nlisten_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{root}'\n"
            "ssl = on\n"
            f"ssl_cert_file = '{certs / 'server.crt'}'\n"
            f"ssl_key_file = '{certs / 'server.key'}'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\n"
        )
    log_file = root / "server.log"
    started = run(binaries / "pg_ctl", "-D", data, "-l", log_file, "-w", "-t", "60", "start")
    if started.returncode != 0:
        log = log_file.read_text() if log_file.exists() else ""
        pytest.fail(f"postgres did not start: {started.stdout}{started.stderr}\n{log}")
    try:
        yield TlsServer(port, certs / "ca.crt", certs / "other-ca.crt")
    finally:
        run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


async def test_connects_with_verify_full_and_the_cluster_ca(tls_server: TlsServer) -> None:
    db = Database(tls_server.url(), min_size=1, max_size=2)
    await db.open(wait=True, wait_seconds=15)
    try:
        row = await db.fetchrow(
            "SELECT ssl, version AS tls_version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert row is not None
        assert row["ssl"] is True
        assert row["tls_version"] in ("TLSv1.2", "TLSv1.3")
        registry = HealthRegistry(fail_threshold=1, pass_threshold=1)
        registry.add_check("database", db.check(), critical=True)
        await registry.run_once()
        assert registry.ready
    finally:
        await db.close()


async def test_a_connection_without_tls_is_refused_by_the_server(tls_server: TlsServer) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{tls_server.port}/postgres?sslmode=disable"
    with pytest.raises(DatabaseUnavailable, match=r"rejects connection .* no encryption"):
        await connect(url, connect_timeout=3)


UNVERIFIED = [
    ("untrusted CA", "certificate verify failed"),
    ("wrong host name", 'does not match host name "catalog-db-ro.emporium-dev-data.svc"'),
]


def _unverified_url(server: TlsServer, case: str) -> str:
    if case == "untrusted CA":
        return server.url(ca_file=server.other_ca_file)
    # The certificate names the read-write service only.
    return server.url(host="catalog-db-ro.emporium-dev-data.svc")


@pytest.mark.parametrize(("case", "expected"), UNVERIFIED)
async def test_an_unverified_server_is_refused_with_the_reason(
    tls_server: TlsServer, case: str, expected: str
) -> None:
    # A single connection (migrations, tooling) fails with libpq's reason.
    with pytest.raises(DatabaseUnavailable, match=expected):
        await connect(_unverified_url(tls_server, case), connect_timeout=3)


@pytest.mark.parametrize(("case", "expected"), UNVERIFIED)
async def test_the_pool_refuses_an_unverified_server_and_readiness_says_database_down(
    tls_server: TlsServer, case: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _unverified_url(tls_server, case)
    db = Database(url, min_size=0, max_size=1, acquire_timeout=2, connect_timeout=3)
    # Opening in the background never raises: the service starts and reports.
    await db.open()
    try:
        with (
            caplog.at_level("WARNING", logger="psycopg.pool"),
            pytest.raises(DatabaseUnavailable),
        ):
            await db.fetchval("SELECT 1")
        # The pool logs why each attempt failed.
        assert any(expected in record.getMessage() for record in caplog.records), caplog.text
        assert await db.ping(within=2) is False
        registry = HealthRegistry(fail_threshold=1, pass_threshold=1, check_timeout_seconds=3)
        registry.add_check("database", db.check(timeout=2), critical=True)
        await registry.run_once()
        assert not registry.ready
        _, report = registry.report()
        assert report["dependencies"]["database"]["status"] == "down"
        assert "DatabaseUnavailable" in report["dependencies"]["database"]["detail"]
        (reason,) = registry.unready_reasons()
        assert reason.startswith("database down: ")
    finally:
        await db.close()
