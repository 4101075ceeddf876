"""PostgreSQL: install, a private server under .run/postgres, per-service databases.

The server runs as an unprivileged user (``postgres`` when the runner runs as
root, since root cannot run it), listens on 127.0.0.1 only and asks for a
SCRAM password on every connection. The superuser password and one password
per service live under ``.run/secrets``.
"""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
import urllib.parse
from pathlib import Path

from . import apt
from .progress import PlatformError, note, run, step, tail
from .settings import DATA_SERVICES, Settings, secret

SUPERUSER = "postgres"
SUPERUSER_SECRET = "postgres-superuser"
CONF_NAME = "emporium.conf"
# Query parameters of an admin URL passed on to libpq and to the service URLs.
_LIBPQ_PARAMS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


# --- binaries ---------------------------------------------------------------


def bin_dir(s: Settings) -> Path | None:
    preferred = Path(f"/usr/lib/postgresql/{s.postgres_major}/bin")
    if (preferred / "postgres").exists() or (preferred / "psql").exists():
        return preferred
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(found[-1]) if found else None


def _binary(s: Settings, name: str) -> Path:
    d = bin_dir(s)
    if d is None or not (d / name).exists():
        raise PlatformError(f"{name} not found under /usr/lib/postgresql; run `install` first")
    return d / name


def install(s: Settings) -> None:
    server = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    client = glob.glob("/usr/lib/postgresql/*/bin/psql")
    if s.local_postgres and not server:
        with step(f"postgres: apt-get install postgresql-{s.postgres_major}"):
            # The Debian package would create and start a cluster of its own
            # on port 5432; the runner keeps its own data under .run instead.
            conf = Path("/etc/postgresql-common/createcluster.conf")
            conf.parent.mkdir(parents=True, exist_ok=True)
            if not conf.exists() or "create_main_cluster" not in conf.read_text():
                with conf.open("a") as f:
                    f.write("create_main_cluster = false\n")
            apt.install([f"postgresql-{s.postgres_major}"])
    elif not client:
        with step(f"postgres: apt-get install postgresql-client-{s.postgres_major}"):
            apt.install([f"postgresql-client-{s.postgres_major}"])
    else:
        note(f"postgres: binaries present in {bin_dir(s)}")


# --- the server user ----------------------------------------------------------


def _server_user() -> str | None:
    """The OS user that runs the server: `postgres` for root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PlatformError("user `postgres` missing; run `install` first") from exc
    return "postgres"


def _give(path: Path, user: str | None, mode: int) -> None:
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)


def _pg_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    return env


def log_path(s: Settings) -> Path:
    return s.logs_dir / "postgres.log"


# --- lifecycle ----------------------------------------------------------------


def is_running(s: Settings) -> bool:
    if not (s.pg_data / "PG_VERSION").exists():
        return False
    res = run(
        [_binary(s, "pg_ctl"), "-D", s.pg_data, "status"],
        user=_server_user(),
        env=_pg_env(),
        check=False,
    )
    return res.returncode == 0


def server_pid(s: Settings) -> int | None:
    try:
        return int((s.pg_data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _initdb(s: Settings, user: str | None) -> None:
    password = secret(s, SUPERUSER_SECRET)
    s.pg_data.mkdir(parents=True, exist_ok=True)
    _give(s.pg_data, user, 0o700)
    pwfile = s.state_dir / ".pg-initdb-password"
    pwfile.unlink(missing_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    _give(pwfile, user, 0o600)
    try:
        run(
            [
                _binary(s, "initdb"),
                "-D",
                s.pg_data,
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            user=user,
            env=_pg_env(),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with (s.pg_data / "postgresql.conf").open("a") as f:
        f.write(
            f"\n# Settings of the local runner, rewritten at every start.\n"
            f"include_if_exists = '{CONF_NAME}'\n"
        )


def _write_conf(s: Settings, user: str | None) -> None:
    s.pg_socket_dir.mkdir(parents=True, exist_ok=True)
    _give(s.pg_socket_dir, user, 0o755)
    conf = s.pg_data / CONF_NAME
    conf.write_text(
        "listen_addresses = '127.0.0.1'\n"
        f"port = {s.pg_port}\n"
        f"unix_socket_directories = '{s.pg_socket_dir}'\n"
        "password_encryption = 'scram-sha-256'\n"
        "max_connections = 200\n"
        "shared_buffers = '64MB'\n"
        "log_timezone = 'UTC'\n"
        "timezone = 'UTC'\n"
    )
    _give(conf, user, 0o600)


def start(s: Settings, timeout: float = 60) -> None:
    """Starts the local server (initdb on first use); a no-op if it runs."""
    if not s.local_postgres:
        return
    s.ensure_dirs()
    user = _server_user()
    if is_running(s):
        note(f"postgres: already running on 127.0.0.1:{s.pg_port} (pid {server_pid(s)})")
        check_ready(s)
        return
    if not (s.pg_data / "PG_VERSION").exists():
        if s.pg_data.exists() and any(s.pg_data.iterdir()):
            raise PlatformError(f"{s.pg_data} exists but holds no cluster; remove it to start over")
        with step("postgres: initdb"):
            _initdb(s, user)
    _write_conf(s, user)
    log = log_path(s)
    log.touch(exist_ok=True)
    _give(log, user, 0o644)
    with step(f"postgres: start on 127.0.0.1:{s.pg_port}"):
        res = run(
            [
                _binary(s, "pg_ctl"),
                "-D",
                s.pg_data,
                "-l",
                log,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            user=user,
            env=_pg_env(),
            check=False,
            timeout=timeout + 15,
        )
        if res.returncode != 0:
            raise PlatformError(
                f"postgres did not start (exit {res.returncode}); log: {log}\n"
                f"{res.stdout}{res.stderr}\n--- {log} ---\n{tail(log)}"
            )
        check_ready(s)


def check_ready(s: Settings) -> None:
    """Runs one query with the superuser password over TCP."""
    try:
        psql(s, "SELECT 1")
    except subprocess.CalledProcessError as exc:
        where = f"; log: {log_path(s)}" if s.local_postgres else ""
        raise PlatformError(f"postgres does not answer queries{where}\n{exc.stderr}") from exc


def stop(s: Settings, timeout: float = 60) -> bool:
    """Stops the local server (fast shutdown). Returns whether it was running."""
    if not s.local_postgres or not is_running(s):
        return False
    with step("postgres: stop"):
        run(
            [
                _binary(s, "pg_ctl"),
                "-D",
                s.pg_data,
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            user=_server_user(),
            env=_pg_env(),
            timeout=timeout + 15,
        )
    return True


# --- connecting -------------------------------------------------------------


def _split_admin_url(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Returns (libpq environment, query parameters) of a postgresql:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise PlatformError("EMPORIUM_POSTGRES_ADMIN_URL must be a postgresql:// URL")
    env = {
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": urllib.parse.unquote(parts.username or "postgres"),
        "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/")) or "postgres",
    }
    if parts.password is not None:
        env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
    query = dict(urllib.parse.parse_qsl(parts.query))
    for key, var in _LIBPQ_PARAMS.items():
        if key in query:
            env[var] = query[key]
    return env, {k: v for k, v in query.items() if k in _LIBPQ_PARAMS}


def libpq_env(url: str) -> dict[str, str]:
    """PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (and SSL settings) of a URL."""
    return _split_admin_url(url)[0]


def admin_libpq_env(s: Settings) -> dict[str, str]:
    if s.external_postgres_url:
        return _split_admin_url(s.external_postgres_url)[0]
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(s.pg_port),
        "PGUSER": SUPERUSER,
        "PGPASSWORD": secret(s, SUPERUSER_SECRET),
        "PGDATABASE": "postgres",
    }


def _url(
    user: str, password: str, host: str, port: str, db: str, query: dict[str, str] | None = None
) -> str:
    q = lambda v: urllib.parse.quote(v, safe="")  # noqa: E731
    host = f"[{host}]" if ":" in host else host
    url = f"postgresql://{q(user)}:{q(password)}@{host}:{port}/{q(db)}"
    return url + (f"?{urllib.parse.urlencode(query)}" if query else "")


def admin_url(s: Settings) -> str:
    """The superuser DSN (the external one, or the local server's)."""
    if s.external_postgres_url:
        return s.external_postgres_url
    e = admin_libpq_env(s)
    return _url(e["PGUSER"], e["PGPASSWORD"], e["PGHOST"], e["PGPORT"], e["PGDATABASE"])


def service_password(s: Settings, service: str) -> str:
    return secret(s, f"postgres-{service}")


def service_url(s: Settings, service: str) -> str:
    """DATABASE_URL of one service: its own login and its own database."""
    if service not in DATA_SERVICES:
        raise PlatformError(f"{service} owns no database")
    if s.external_postgres_url:
        env, query = _split_admin_url(s.external_postgres_url)
        host, port = env["PGHOST"], env["PGPORT"]
    else:
        host, port, query = "127.0.0.1", str(s.pg_port), {}
    return _url(service, service_password(s, service), host, port, service, query)


def psql(
    s: Settings, sql: str, *, database: str | None = None, libpq_env: dict[str, str] | None = None
) -> str:
    """Runs SQL (from stdin, so passwords stay out of the process list)."""
    env = _pg_env()
    env.update(libpq_env or admin_libpq_env(s))
    if database:
        env["PGDATABASE"] = database
    res = run(
        [_binary(s, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        env=env,
        input=sql,
        timeout=60,
    )
    return res.stdout.strip()


# --- provisioning ---------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def provision_sql(service: str, password: str) -> str:
    i, lit = _ident(service), _literal(service)
    return f"""
SELECT 'CREATE ROLE {i}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit})\\gexec
ALTER ROLE {i} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD {_literal(password)};
SELECT 'CREATE DATABASE {i} OWNER {i}'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {lit})\\gexec
ALTER DATABASE {i} OWNER TO {i};
REVOKE CONNECT, TEMPORARY ON DATABASE {i} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {i} TO {i};
"""


def provision(s: Settings) -> None:
    """One login role and one database per service that owns data."""
    with step(f"postgres: provision roles and databases ({', '.join(DATA_SERVICES)})"):
        sql = "".join(provision_sql(svc, service_password(s, svc)) for svc in DATA_SERVICES)
        psql(s, sql)
