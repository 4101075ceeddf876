"""`make new-service NAME=...`: a new service from the template, wired into the system.

    uv run --frozen python scripts/new_service.py NAME [--no-database] [--produces]
        [--consumes KEY[,KEY...]] [--description TEXT]

Checks everything first and changes nothing when a check fails (one line on
stderr, exit 2): the name (2 to 31 lowercase letters and digits, not a Python
keyword or standard module, not a name the distribution already uses), the
flags (Kafka needs a database), and the system manifest as it would be with
the new service (its loader's own rules). Then:

1. copier renders templates/service (answers in services/NAME/.copier-answers.yml,
   so `copier update` brings the service up to a newer template): the proto
   under protos/emporium/NAME/v1, the service package in the house style
   (main.py, settings.py, domain.py, repository.py, grpc_api.py, messages.py,
   topics.py and consumers.py when it uses Kafka, migrations), its unit and
   integration tests, and docs/services/NAME.md with its degradation rows;
2. the files that list every service get the new one: the system manifest
   (and the topic it produces), the chart's values (its `services` entry and
   the topic list), the chart's golden selectors, the tables of
   docs/configuration.md, images/Dockerfile, and the workspace (root
   pyproject.toml, uv.lock);
3. the generated protobuf code is written (scripts/protos.sh) and the
   workspace synchronised, so the service's tests run at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import math
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "services/contracts/src/emporium/contracts/system.toml"
VALUES = ROOT / "charts/emporium/values.yaml"
CI_VALUES = ROOT / "charts/emporium/ci"
SELECTORS = ROOT / "tests/chart/golden/selectors.yaml"
CONFIGURATION = ROOT / "docs/configuration.md"
DOCKERFILE = ROOT / "images/Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")
#: Names the distribution itself uses (packages of the namespace, proto packages,
#: directories and words of the chart) besides the services.
RESERVED = {
    "kit", "contracts", "events", "common", "emporium", "testing", "tests", "test",
    "service", "services", "platform", "infra", "charts", "chart", "protos", "scripts",
    "docs", "bench", "images", "templates", "gateway", "defaults", "migrations", "all",
    # fixtures of a service's tests (a service's own fixture is named after it)
    "database", "db", "topics", "stub", "producer", "repository",
}  # fmt: skip


class Refused(Exception):
    """A check failed; nothing was changed."""


def _manifest_module() -> ModuleType:
    # The loader is standard library only; imported by path like the local runner does.
    path = ROOT / "services/contracts/src/emporium/contracts/manifest.py"
    spec = importlib.util.spec_from_file_location("_system_manifest", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    database: bool
    produces: bool
    consumes: tuple[str, ...]
    grpc_port: int
    admin_port: int
    consumed: tuple[dict[str, str], ...]
    manifest_text: str

    @property
    def kafka(self) -> bool:
        return self.produces or bool(self.consumes)

    @property
    def topic_key(self) -> str:
        return f"{self.name}-item-added"

    @property
    def topic_name(self) -> str:
        return f"{self.name}.item-added.v1"


def _payload_module(payload: str) -> str:
    """The generated module of a message, e.g. emporium.events.v1.order_events_pb2."""
    package, _, message = payload.rpartition(".")
    directory = ROOT / "protos" / package.replace(".", "/")
    pattern = re.compile(rf"^message {re.escape(message)}\s*\{{", re.M)
    for proto in sorted(directory.glob("*.proto")):
        if pattern.search(proto.read_text()):
            return f"{package}.{proto.stem}_pb2"
    raise Refused(f"the payload {payload} of a consumed topic is in no proto under {directory}")


def plan(args: argparse.Namespace) -> Plan:
    name: str = args.name
    if not NAME.match(name):
        raise Refused(
            f"{name!r}: a service name is 2 to 31 lowercase letters and digits, "
            "starting with a letter"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise Refused(f"{name!r} is a Python keyword: it cannot be a package name")
    if name in sys.stdlib_module_names:
        raise Refused(f"{name!r} is a Python standard module: importing it would be ambiguous")
    if name in RESERVED:
        raise Refused(f"{name!r} is a name the distribution already uses")
    manifest = _manifest_module()
    system = manifest.load(MANIFEST)
    if name in system.services:
        raise Refused(f"{name!r} is already a service of the system manifest")
    for taken in (ROOT / "services" / name, ROOT / "protos/emporium" / name):
        if taken.exists():
            raise Refused(f"{name!r}: {taken.relative_to(ROOT)} already exists")
    consumes = tuple(k for k in (args.consumes or "").split(",") if k)
    if (args.produces or consumes) and not args.database:
        raise Refused(
            "a service that uses Kafka needs its database (the outbox and the processed-events "
            "ledger live there): drop --no-database"
        )
    for key in consumes:
        if key not in system.topics:
            known = ", ".join(system.topics)
            raise Refused(f"--consumes {key}: not a topic key of the manifest ({known})")
    ports = [p for s in system.services.values() for p in (s.ports.grpc, s.ports.admin)]
    grpc_port = max(s.ports.grpc for s in system.services.values()) + 1
    admin_port = max(s.ports.admin for s in system.services.values()) + 1
    if grpc_port in ports or admin_port in ports:
        raise Refused(f"no free local port after {grpc_port - 1}/{admin_port - 1}")
    consumed = tuple(
        {
            "key": key,
            "attr": key.replace("-", "_"),
            "name": system.topics[key].name,
            "payload": system.topics[key].payload,
            "module": _payload_module(system.topics[key].payload),
            "message": system.topics[key].payload.rpartition(".")[2],
        }
        for key in consumes
    )
    p = Plan(
        name=name,
        description=args.description or f"The {name} service",
        database=args.database,
        produces=args.produces,
        consumes=consumes,
        grpc_port=grpc_port,
        admin_port=admin_port,
        consumed=consumed,
        manifest_text="",
    )
    text = _with_service(MANIFEST.read_text(), p)
    try:  # the loader's own rules, on the manifest as it would be
        manifest.parse(tomllib.loads(text), str(MANIFEST.relative_to(ROOT)))
    except manifest.ManifestError as error:
        raise Refused(str(error)) from None
    return Plan(**{**p.__dict__, "manifest_text": text})


# --- the files that list every service ---------------------------------------------


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _with_service(text: str, p: Plan) -> str:
    if p.produces:
        topic = (
            f"[topics.{p.topic_key}]\n"
            f'name = "{p.topic_name}"\n'
            f'payload = "emporium.events.v1.{p.name.capitalize()}ItemAdded"\n'
            "partitions = 3\ndlq_partitions = 1\n\n"
        )
        marker = "# --- services"
        if marker not in text:
            raise Refused(f"{MANIFEST.relative_to(ROOT)}: no '{marker}' line to add a topic above")
        text = text.replace(marker, topic + marker, 1)
    service = (
        f"\n[services.{p.name}]\n"
        f"database = {'true' if p.database else 'false'}\n"
        "critical = []\noptional = []\n"
        f"produces = {_toml_list([p.topic_key] if p.produces else [])}\n"
        f"consumes = {_toml_list(p.consumes)}\n"
        f"ports = {{ grpc = {p.grpc_port}, admin = {p.admin_port} }}\n"
    )
    return text.rstrip("\n") + "\n" + service


def _services_end(lines: list[str]) -> int:
    """Index just after the last line of the top-level ``services:`` map."""
    end = lines.index("services:\n") + 1
    while end < len(lines) and (lines[end].startswith("  ") or not lines[end].strip()):
        end += 1
    while not lines[end - 1].strip():
        end -= 1
    return end


def _edit_values(p: Plan) -> None:
    lines = VALUES.read_text().splitlines(keepends=True)
    end = _services_end(lines)
    entry = [f"  {p.name}:\n"]
    entry += ["    database: true\n"] if p.database else []
    entry += ["    kafka: true\n"] if p.kafka else []
    if len(entry) == 1:
        entry[0] = f"  {p.name}: {{}}\n"
    lines[end:end] = entry
    for i, line in enumerate(lines[:end]):  # the services list the chart's README shows
        if line.startswith("# @default -- ") and lines[i + 1] == "services:\n":
            lines[i] = line.rstrip("\n") + f", {p.name}\n"
    if p.produces:
        topics = next(i for i, line in enumerate(lines) if line == "  topics:\n")
        last = topics + 1
        while last < len(lines) and lines[last].startswith("    - "):
            last += 1
        lines.insert(last, f"    - {p.topic_name}\n")
    VALUES.write_text("".join(lines))
    # Scenarios of the chart's CI: the smallest release leaves every service
    # but the gateway and catalog out; the chart-managed Secrets need a
    # DATABASE_URL for each service that owns a database.
    minimal = CI_VALUES / "minimal-values.yaml"
    if minimal.exists():
        lines = minimal.read_text().splitlines(keepends=True)
        lines[_services_end(lines) : _services_end(lines)] = [
            f"  {p.name}:\n",
            "    enabled: false\n",
        ]
        minimal.write_text("".join(lines))
    managed = CI_VALUES / "chart-managed-secret-values.yaml"
    if managed.exists() and p.database:
        url = f"postgresql://{p.name}@postgres.postgres:5432/{p.name}?sslmode=verify-full"
        lines = managed.read_text().splitlines(keepends=True)
        lines[_services_end(lines) : _services_end(lines)] = [
            f"  {p.name}:\n",
            "    secret:\n",
            "      stringData:\n",
            f"        DATABASE_URL: {url}\n",
        ]
        managed.write_text("".join(lines))


def _edit_selectors(p: Plan) -> None:
    text = SELECTORS.read_text()
    head, _, body = text.partition("selectors:\n")
    blocks = re.split(r"(?m)^(?=  \S)", body)
    blocks = [b for b in blocks if b.strip()]
    for kind in ("Deployment", "PodDisruptionBudget", "Service"):
        blocks.append(
            f"  {kind}/emporium-{p.name}:\n"
            "    app.kubernetes.io/component: server\n"
            "    app.kubernetes.io/instance: emporium\n"
            f"    app.kubernetes.io/name: {p.name}\n"
        )
    blocks.sort(key=lambda b: b.split(":", 1)[0].strip())
    SELECTORS.write_text(head + "selectors:\n" + "".join(blocks))


def _quantity(value: object) -> float:
    """A Kubernetes CPU (cores) or memory (GiB) quantity as a number."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**-20, "Mi": 2**-10, "Gi": 1.0, "Ti": 2**10}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _edit_quotas(p: Plan) -> None:
    """Raises each environment's namespace quota (infra/Pulumi.<env>.yaml) by what the
    new service takes at its most replicas plus one surge pod, as the chart test counts."""
    import yaml  # type: ignore[import-untyped]  # the chart dependency group

    chart_defaults = yaml.safe_load(VALUES.read_text())["defaults"]
    for stack in sorted(ROOT.glob("infra/Pulumi.*.yaml")):
        env = stack.name.split(".")[1]
        env_values = ROOT / f"charts/emporium/values-{env}.yaml"
        if not env_values.exists():
            continue
        overrides = (yaml.safe_load(env_values.read_text()) or {}).get("defaults") or {}
        merged = {**chart_defaults, **overrides}
        scaling = {**chart_defaults["autoscaling"], **overrides.get("autoscaling", {})}
        resources = {
            kind: chart_defaults["resources"][kind] | overrides.get("resources", {}).get(kind, {})
            for kind in ("requests", "limits")
        }
        pods = (scaling["maxReplicas"] if scaling["enabled"] else merged["replicas"]) + 1
        added = {
            "requestsCpu": pods * _quantity(resources["requests"]["cpu"]),
            "requestsMemory": pods * _quantity(resources["requests"]["memory"]),
            "limitsCpu": pods * _quantity(resources["limits"]["cpu"]),
            "limitsMemory": pods * _quantity(resources["limits"]["memory"]),
        }
        text = stack.read_text()
        block = re.search(r"(?m)^  emporium:app:\n((?:    .*\n)+)", text)
        if block is None:
            raise Refused(f"{stack.relative_to(ROOT)}: no emporium:app quota")
        body = block.group(1)
        old = {k: v for k, v in re.findall(r"(?m)^    (\w+): \"?([^\"\n]+)\"?$", body)}
        new = dict(old)
        for key, amount in added.items():
            total = math.ceil(_quantity(old[key]) + amount - 1e-9)
            new[key] = f'"{total}"' if "Cpu" in key else f"{total}Gi"
        new["pods"] = str(int(old["pods"]) + pods)
        for key, value in new.items():
            body = re.sub(rf"(?m)^    {key}: .*$", f"    {key}: {value}", body)
        stack.write_text(text[: block.start(1)] + body + text[block.end(1) :])
        # The environment's values file names the quota in its opening comment.
        lines = env_values.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            if f"infra/Pulumi.{env}.yaml sets (" in line:
                requests = new["requestsCpu"].strip('"')
                cpu, mem = new["limitsCpu"].strip('"'), new["limitsMemory"].removesuffix("Gi")
                line = re.sub(r"requests [\d.]+ CPU", f"requests {requests} CPU", line)
                lines[i] = re.sub(
                    r"limits [\d.]+ CPU / [\d.]+ GiB", f"limits {cpu} CPU / {mem} GiB", line
                )
        env_values.write_text("".join(lines))


def _table_end(lines: list[str], heading: str) -> int:
    """Index just after the last row of the first table under ``heading``."""
    i = next(n for n, line in enumerate(lines) if line.startswith(heading))
    while not lines[i].startswith("|"):
        i += 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    return i


def _edit_configuration(p: Plan) -> None:
    lines = CONFIGURATION.read_text().splitlines(keepends=True)
    at = _table_end(lines, "## Local ports")
    lines.insert(at, f"| {p.name} | {p.grpc_port} | {p.admin_port} | – |\n")
    produced = [f"`{p.topic_name}`"] if p.produces else []
    produced += [f"`{t['name']}.dlq`" for t in p.consumed]
    consumed = [f"`{t['name']}`" for t in p.consumed]
    at = _table_end(lines, "## Kafka topics")
    lines.insert(
        at, f"| {p.name} | {', '.join(produced) or '–'} | {', '.join(consumed) or '–'} |\n"
    )
    if p.database:
        # "Secret `emporium-<service>` for each service that owns data (a, b, c), keys ..."
        text = "".join(lines)
        found = re.search(r"each service that owns data \(([^)]+)\)", text)
        if found is None:
            raise Refused("docs/configuration.md: no 'each service that owns data (...)' list")
        owners = re.sub(r"\s+", " ", found.group(1))
        text = text[: found.start(1)] + f"{owners}, {p.name}" + text[found.end(1) :]
        lines = text.splitlines(keepends=True)
    if p.produces:
        # The topic list is the paragraph under the heading: `a`, `b`, ..., each with a twin.
        i = next(n for n, line in enumerate(lines) if line.startswith("## Kafka topics")) + 2
        while "`, each with" not in lines[i] and "` each with" not in lines[i]:
            i += 1
        lines[i] = lines[i].replace("`, each with", f"`, `{p.topic_name}`, each with", 1)
    CONFIGURATION.write_text("".join(lines))


def _edit_dockerfile(p: Plan) -> None:
    lines = DOCKERFILE.read_text().splitlines(keepends=True)
    copies = [
        i for i, line in enumerate(lines) if re.match(r"COPY services/\w+/pyproject.toml", line)
    ]
    if not copies:
        raise Refused("images/Dockerfile: no COPY services/<name>/pyproject.toml line")
    lines.insert(copies[-1] + 1, f"COPY services/{p.name}/pyproject.toml services/{p.name}/\n")
    DOCKERFILE.write_text("".join(lines))


def _edit_pyproject(p: Plan) -> None:
    text = PYPROJECT.read_text()
    dist = f"emporium-{p.name}"
    text, n1 = re.subn(
        r'(dependencies = \[\n(?:    "[^"]+",\n)*)(\])', rf'\1    "{dist}",\n\2', text, count=1
    )
    text, n2 = re.subn(
        r"(\[tool\.uv\.sources\]\n(?:[^\n]+ = \{ workspace = true \}\n)*)",
        rf"\1{dist} = {{ workspace = true }}\n",
        text,
        count=1,
    )
    text, n3 = re.subn(
        r'(mypy_path = \[\n(?:    "[^"]+",\n)*)(\])',
        rf'\1    "services/{p.name}/src",\n\2',
        text,
        count=1,
    )
    if (n1, n2, n3) != (1, 1, 1):
        raise Refused("pyproject.toml: dependencies, [tool.uv.sources] or mypy_path not found")
    PYPROJECT.write_text(text)


# --- running it ----------------------------------------------------------------------


def _copier(p: Plan) -> None:
    from copier import run_copy  # the dev dependency group; imported late for a fast --help

    run_copy(
        src_path=".",
        dst_path=".",
        vcs_ref="HEAD",
        answers_file=f"services/{p.name}/.copier-answers.yml",
        data={
            "name": p.name,
            "description": p.description,
            "database": p.database,
            "produces": p.produces,
            "consumes": list(p.consumes),
            "grpc_port": p.grpc_port,
            "admin_port": p.admin_port,
            "consumed": [dict(t) for t in p.consumed],
        },
        defaults=True,
        overwrite=False,
        quiet=True,
    )


def _run(*command: str, quiet: bool = False, hint: str = "") -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=quiet, text=True)
    if done.returncode:
        sys.stderr.write((done.stdout or "") + (done.stderr or ""))
        raise SystemExit(
            f"new-service: {' '.join(command)} failed (exit {done.returncode})"
            + (f"; {hint}" if hint else "")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--description", default="")
    parser.add_argument(
        "--no-database", dest="database", action="store_false", help="own no PostgreSQL database"
    )
    parser.add_argument(
        "--produces", action="store_true", help="publish <name>.item-added.v1 (outbox)"
    )
    parser.add_argument(
        "--consumes", default="", help="topic keys of the manifest, comma-separated"
    )
    args = parser.parse_args(argv)
    try:
        p = plan(args)
    except Refused as error:
        print(f"new-service: {error}", file=sys.stderr)
        return 2
    import os

    os.chdir(ROOT)
    _copier(p)
    MANIFEST.write_text(p.manifest_text)
    _edit_values(p)
    _edit_selectors(p)
    _edit_quotas(p)
    _edit_configuration(p)
    _edit_dockerfile(p)
    _edit_pyproject(p)
    _run(
        "uv",
        "lock",
        "--offline",
        "--quiet",
        hint="uv's cache lacks the package index data an offline lock needs: run "
        "scripts/bootstrap.sh once with the network (it fetches it), remove what "
        "this run wrote (git status lists it) and try again",
    )
    # Imports sorted and code formatted as the project's linter wants them
    # (the order of imports depends on the service's name).
    generated = f"services/{p.name}"
    _run("uv", "run", "--frozen", "ruff", "check", "--quiet", "--select", "I", "--fix", generated)
    _run("uv", "run", "--frozen", "ruff", "format", "--quiet", generated)
    _run("uv", "run", "--frozen", "scripts/protos.sh", quiet=True)
    _run("uv", "sync", "--frozen", "--offline", "--all-groups", "--quiet")
    # The chart's README is generated from values.yaml (helm-docs, installed by make setup).
    if (ROOT / ".cache/bin/helm-docs").exists():
        _run("scripts/test-chart.sh", "--write-readme", quiet=True)
    else:
        print("new-service: run scripts/test-chart.sh --write-readme", file=sys.stderr)
    print(
        f"new-service: services/{p.name} (gRPC {p.grpc_port}, admin {p.admin_port}"
        f"{', database' if p.database else ''}"
        f"{', produces ' + p.topic_name if p.produces else ''}"
        f"{', consumes ' + ', '.join(p.consumes) if p.consumes else ''}); "
        f"next: scripts/lint.sh, uv run --frozen pytest services/{p.name}, git add, commit"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
