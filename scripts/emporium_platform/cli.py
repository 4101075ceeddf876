"""Command line of the local platform: `python3 scripts/platformctl.py <command>`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from . import cluster, environment, kafka, postgres, services
from .progress import PlatformError, note
from .settings import SERVICES, Settings


def _install(s: Settings, _: argparse.Namespace) -> None:
    from . import install

    install()


def _start(s: Settings, _: argparse.Namespace) -> None:
    from . import ensure_started

    ensure_started()
    _print_endpoints(s)


def _provision(s: Settings, _: argparse.Namespace) -> None:
    from . import provision

    provision()


def _env(s: Settings, args: argparse.Namespace) -> None:
    env = environment.service_env(s, args.service)
    if args.format == "json":
        print(json.dumps(env, indent=2, sort_keys=True))
    else:
        for key in sorted(env):
            print(f"export {key}={shlex.quote(env[key])}")


def _admin_url(s: Settings, _: argparse.Namespace) -> None:
    print(postgres.admin_url(s))


def _start_postgres(s: Settings, _: argparse.Namespace) -> None:
    from . import start_postgres

    start_postgres()


def _stop_postgres(s: Settings, _: argparse.Namespace) -> None:
    if not s.local_postgres:
        raise PlatformError("EMPORIUM_POSTGRES_ADMIN_URL is set: PostgreSQL is not ours to stop")
    if not postgres.stop(s):
        note("postgres: not running")


def _start_kafka(s: Settings, _: argparse.Namespace) -> None:
    from . import start_kafka

    start_kafka()


def _stop_kafka(s: Settings, _: argparse.Namespace) -> None:
    if not s.local_kafka:
        raise PlatformError("EMPORIUM_KAFKA_BOOTSTRAP is set: Kafka is not ours to stop")
    if not kafka.stop(s):
        note("kafka: not running")


def _print_endpoints(s: Settings) -> None:
    note(
        f"postgres: {'external' if not s.local_postgres else 'local'}; superuser DSN: "
        f"`python3 scripts/platformctl.py admin-url`; log: {postgres.log_path(s)}"
    )
    note(f"kafka: {s.kafka_bootstrap}; log: {kafka.log_path(s)}")


def _status(s: Settings, _: argparse.Namespace) -> None:
    rows = []
    if s.local_postgres:
        pg_pid = postgres.server_pid(s) if postgres.is_running(s) else None
        state = "running" if pg_pid else "stopped"
        rows.append(("postgres", f"127.0.0.1:{s.pg_port}", state, str(pg_pid or "-")))
    else:
        rows.append(("postgres", "external", "-", "-"))
    if s.local_kafka:
        kafka_pid = kafka.server_pid(s)
        state = "running" if kafka_pid else "stopped"
        rows.append(("kafka", s.kafka_bootstrap, state, str(kafka_pid or "-")))
    else:
        rows.append(("kafka", f"external {s.kafka_bootstrap}", "-", "-"))
    rows.extend(services.status_rows(s))
    width = max(len(r[1]) for r in rows)
    for name, where, state, pid in rows:
        print(f"{name:<16} {where:<{width}}  {state:<10} pid {pid}")


def _cluster_up(s: Settings, _: argparse.Namespace) -> None:
    cluster.up(s)


def _cluster_down(s: Settings, _: argparse.Namespace) -> None:
    if not cluster.down(s):
        note("cluster: not running")


def _cluster_status(s: Settings, _: argparse.Namespace) -> None:
    rows = cluster.status_rows(s)
    width = max(len(r[1]) for r in rows)
    for name, where, state, pid in rows:
        print(f"{name:<24} {where:<{width}}  {state:<18} pid {pid}")


def _cluster_kubeconfig(s: Settings, _: argparse.Namespace) -> None:
    print(cluster.kubeconfig_path(s))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="platformctl.py", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    def add(name: str, fn, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    add("install", _install, "install PostgreSQL (apt) and Kafka (Maven) if missing")
    add("start", _start, "install, then start PostgreSQL and Kafka unless they run")
    add("provision", _provision, "service logins, databases and Kafka topics (idempotent)")
    e = add("env", _env, "print the environment of one service")
    e.add_argument("service", choices=SERVICES)
    e.add_argument("--format", choices=("shell", "json"), default="shell")
    add("admin-url", _admin_url, "print the PostgreSQL superuser DSN")
    add("status", _status, "show what runs")
    add("stop-postgres", _stop_postgres, "stop the local PostgreSQL server (fault tests)")
    add("start-postgres", _start_postgres, "start the local PostgreSQL server")
    add("stop-kafka", _stop_kafka, "stop the local Kafka server (fault tests)")
    add("start-kafka", _start_kafka, "start the local Kafka server")
    add("cluster-up", _cluster_up, "start the local Kubernetes control plane unless it runs")
    add("cluster-down", _cluster_down, "stop the local control plane and delete its state")
    add("cluster-status", _cluster_status, "show the control plane's processes, ports and memory")
    add("cluster-kubeconfig", _cluster_kubeconfig, "print the admin kubeconfig path")
    services.add_commands(add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        args.fn(Settings.from_env(), args)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.command not in ("env", "admin-url", "status", "cluster-status", "cluster-kubeconfig"):
        note(f"{args.command}: done in {time.monotonic() - started:.1f}s")
    return 0
