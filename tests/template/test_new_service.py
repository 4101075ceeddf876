"""`make new-service` end to end, in a throwaway clone of this repository.

The clone (`git clone` of the committed HEAD) gets a new service that
produces a topic of its own and consumes one of the system's, then:

- bad names and flags are refused with one line and change nothing;
- `scripts/lint.sh` passes (ruff, mypy, buf lint and breaking, generated-code drift);
- the new service's own unit and integration tests pass against the real
  PostgreSQL and Kafka of the local platform, and the contracts' manifest
  tests pass (the manifest agrees with the protos, the workspace and the docs);
- every environment and CI scenario lints and renders with Helm 3 and 4 with
  the service in it, and the chart's unit tests pass (schemas, contract,
  manifest agreement, quotas, checkov);
- the infrastructure's component, stack, contract and CDK Terrain tests pass,
  and under Pulumi's mocks every stack gives the service its PostgreSQL
  cluster and a Kafka user allowed exactly its topics;
- the local runner's environment for it follows docs/configuration.md;
- `make images` would build it; `copier update` brings a template change into it.

Tools come from `make setup` (the clone links this checkout's `.cache/bin`
and `.cache/uv-tools`); Python packages from uv's cache (`--offline`). The
platform is this checkout's (EMPORIUM_STATE_DIR).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "services/contracts/src/emporium/contracts/system.toml"
SYSTEM = tomllib.loads((ROOT / MANIFEST).read_text())
#: A name the shipped system does not use.
NAME = next(n for n in ("loyalty", "loyalty2", "loyalty3") if n not in SYSTEM["services"])
#: A topic of the system the new service consumes.
CONSUMED = next(iter(SYSTEM["topics"]))
KUBE_VERSION = "1.37.0"


def run(
    cwd: Path, *command: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` in ``cwd`` outside this test's virtual environment."""
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=cwd, env=environ | (env or {}), capture_output=True, text=True
    )
    print(f"{time.monotonic() - started:6.1f}s  {' '.join(command)}")
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    return done


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clone of this repository's HEAD with its workspace installed."""
    for tool in ("buf", "helm3", "helm4", "helm-docs"):
        if not (ROOT / ".cache/bin" / tool).exists():
            pytest.fail(f".cache/bin/{tool} is missing: run make setup", pytrace=False)
    if shutil.which("uv") is None:
        pytest.fail("uv is not installed: run make setup", pytrace=False)
    repo = tmp_path_factory.mktemp("fork") / "emporium"
    run(ROOT, "git", "clone", "--quiet", str(ROOT), str(repo))
    (repo / ".cache").mkdir()
    for shared in ("bin", "uv-tools"):
        (repo / ".cache" / shared).symlink_to(ROOT / ".cache" / shared)
    run(repo, "git", "config", "user.name", "Template test")
    run(repo, "git", "config", "user.email", "template-test@example.com")
    run(repo, "uv", "sync", "--frozen", "--offline", "--all-groups", "--quiet")
    yield repo
    shutil.rmtree(repo.parent, ignore_errors=True)


def _status(repo: Path) -> str:
    return run(repo, "git", "status", "--porcelain").stdout


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["NAME=Loyalty"], "lowercase letters and digits"),
        (["NAME=x"], "2 to 31"),
        (["NAME=loyalty-points"], "lowercase letters and digits"),
        (["NAME=class"], "Python keyword"),
        (["NAME=json"], "standard module"),
        (["NAME=kit"], "already uses"),
        ([f"NAME={next(iter(SYSTEM['services']))}"], "already a service"),
        ([f"NAME={NAME}", "DATABASE=no", "PRODUCES=yes"], "needs its database"),
        ([f"NAME={NAME}", "CONSUMES=no-such-topic"], "not a topic key"),
    ],
)
def test_bad_names_and_flags_are_refused_and_change_nothing(
    clone: Path, arguments: list[str], reason: str
) -> None:
    done = run(clone, "make", "--no-print-directory", "new-service", *arguments, check=False)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if line.startswith("new-service:")]
    assert len(said) == 1, done.stderr
    assert reason in said[0]
    assert _status(clone) == ""


@pytest.fixture(scope="module")
def generated(clone: Path) -> Path:
    """The clone with the new service generated."""
    run(clone, "make", "new-service", f"NAME={NAME}", "PRODUCES=yes", f"CONSUMES={CONSUMED}")
    return clone


def test_the_service_and_its_entries_are_generated(generated: Path) -> None:
    package = generated / "services" / NAME / "src/emporium" / NAME
    for module in (
        "main.py",
        "settings.py",
        "domain.py",
        "repository.py",
        "grpc_api.py",
        "messages.py",
        "topics.py",
        "consumers.py",
        "migrations/0001_init.sql",
    ):
        assert (package / module).is_file(), module
    for path in (
        f"services/{NAME}/tests/test_domain.py",
        f"services/{NAME}/tests/test_service.py",
        f"services/{NAME}/.copier-answers.yml",
        f"protos/emporium/{NAME}/v1/{NAME}.proto",
        f"protos/emporium/events/v1/{NAME}_events.proto",
        f"services/contracts/src/emporium/{NAME}/v1/{NAME}_pb2.py",
        f"docs/services/{NAME}.md",
    ):
        assert (generated / path).is_file(), path
    system = tomllib.loads((generated / MANIFEST).read_text())
    assert system["services"][NAME] == {
        "database": True,
        "critical": [],
        "optional": [],
        "produces": [f"{NAME}-item-added"],
        "consumes": [CONSUMED],
        "ports": system["services"][NAME]["ports"],
    }
    assert system["topics"][f"{NAME}-item-added"]["name"] == f"{NAME}.item-added.v1"
    assert f"COPY services/{NAME}/pyproject.toml" in (generated / "images/Dockerfile").read_text()
    assert f'"emporium-{NAME}"' in (generated / "pyproject.toml").read_text()
    assert f'name = "emporium-{NAME}"' in (generated / "uv.lock").read_text()
    images = run(generated, "scripts/images.sh", "--list").stdout.split()
    assert any(image.startswith(f"emporium/{NAME}:") for image in images)
    docs = (generated / f"docs/services/{NAME}.md").read_text()
    assert "## Degradation" in docs
    assert "its database (PostgreSQL) | down" in docs


def test_lint_and_the_protos_drift_check_pass(generated: Path) -> None:
    # Against the clone's HEAD: the new protos are additions, never a breaking change.
    run(generated, "scripts/lint.sh", env={"BUF_AGAINST": "HEAD"})


def test_its_own_tests_pass_on_the_real_postgres_and_kafka(generated: Path) -> None:
    env = {
        # This checkout's platform (the one the test stage started), not a new one.
        "EMPORIUM_STATE_DIR": os.environ.get("EMPORIUM_STATE_DIR") or str(ROOT / ".run"),
        "EMPORIUM_CACHE_DIR": os.environ.get("EMPORIUM_CACHE_DIR") or str(ROOT / ".cache"),
        "EMPORIUM_REQUIRE_PLATFORM": "1",
    }
    done = run(
        generated,
        *("uv", "run", "--frozen", "pytest", "-p", "no:cacheprovider", "-q", "-rs"),
        *(f"services/{NAME}", "services/contracts"),
        env=env,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert not re.search(r"skipped|failed|error", summary), summary
    print(summary)
    service_tests = run(
        generated,
        *("uv", "run", "--frozen", "pytest", "-p", "no:cacheprovider", "-q", "--co"),
        f"services/{NAME}",
    ).stdout
    # Unit tests of the domain, gRPC, health, the produced and the consumed topic.
    assert len(re.findall(r"::test_", service_tests)) >= 9, service_tests


def test_the_local_runner_gives_it_its_environment(generated: Path) -> None:
    """The runner's environment for every manifest service (ports, DATABASE_URL,
    Kafka, consumer group) follows docs/configuration.md; its state stays in the clone."""
    done = run(
        generated,
        *("uv", "run", "--frozen", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "-m", "unit"),
        "tests/platform",
        env={"EMPORIUM_STATE_DIR": str(generated / ".run")},
    )
    assert f"test_env_follows_the_contract[{NAME}]" in done.stdout
    assert not re.search(r"skipped|failed|error", done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("helm", ["helm3", "helm4"])
def test_every_environment_renders_with_it(generated: Path, helm: str) -> None:
    chart = generated / "charts/emporium"
    binary = str(generated / ".cache/bin" / helm)
    env = {
        f"HELM_{k}_HOME": str(generated / ".cache" / f"helm-{k.lower()}")
        for k in ("CACHE", "CONFIG", "DATA")
    }
    for environment in ("dev", "staging", "prod"):
        values = ("-f", str(chart / f"values-{environment}.yaml"))
        where = ("--namespace", f"emporium-{environment}", "--kube-version", KUBE_VERSION)
        run(generated, binary, "lint", "--strict", str(chart), *values, *where, env=env)
        rendered = run(
            generated, binary, "template", "emporium", str(chart), *values, *where, env=env
        ).stdout
        objects = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(rendered) if o}
        for kind in ("Deployment", "Service", "ConfigMap", "NetworkPolicy", "Job"):
            assert any(k == kind and NAME in name for k, name in objects), (
                f"{environment}: no {kind} for {NAME}"
            )
    for scenario in sorted((chart / "ci").glob("*-values.yaml")):
        where = ("--namespace", "emporium-dev", "--kube-version", KUBE_VERSION)
        run(
            generated,
            binary,
            "template",
            "emporium",
            str(chart),
            "-f",
            str(scenario),
            *where,
            env=env,
        )


def test_the_chart_tests_pass_with_it(generated: Path) -> None:
    done = run(
        generated,
        *("uv", "run", "--frozen", "pytest", "-p", "no:cacheprovider", "-q", "-m", "unit"),
        "tests/chart",
    )
    print(done.stdout.strip().splitlines()[-1])


INFRA_CHECK = """
import pytest

NAME = "{name}"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_new_service_has_its_database_and_kafka_user(stack_runs, stack):
    run = stack_runs[stack]
    clusters = {{c.get("metadata.name") for c in run.custom("Cluster")}}
    assert f"{{NAME}}-db" in clusters, clusters
    users = {{u.get("metadata.name"): u for u in run.custom("KafkaUser")}}
    assert NAME in users, sorted(users)
    acls = users[NAME].inputs["spec"]["authorization"]["acls"]
    granted = {{(a["resource"]["type"], a["resource"]["name"]) for a in acls}}
    assert granted == {{
        ("topic", "{produced}"),
        ("topic", "{consumed}"),
        ("topic", "{consumed}.dlq"),
        ("group", NAME),
    }}, granted
"""


def test_the_infrastructure_gives_it_a_database_and_a_kafka_user(generated: Path) -> None:
    infra = generated / "infra"
    consumed = tomllib.loads((generated / MANIFEST).read_text())["topics"][CONSUMED]["name"]
    (infra / "tests/test_generated_service.py").write_text(
        INFRA_CHECK.format(name=NAME, produced=f"{NAME}.item-added.v1", consumed=consumed)
    )
    run(infra, "uv", "sync", "--frozen", "--offline", "--quiet")
    done = run(
        infra,
        *("uv", "run", "--frozen", "pytest", "-p", "no:cacheprovider", "-q"),
        *("tests/test_components.py", "tests/test_stacks.py", "tests/test_contract.py"),
        *("tests/test_terraform.py", "tests/test_generated_service.py"),
        env={"JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"},
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert not re.search(r"skipped|failed|error", summary), summary
    print(summary)


def test_copier_update_brings_a_template_change_into_the_service(generated: Path) -> None:
    run(generated, "git", "add", "-A")
    run(generated, "git", "commit", "--quiet", "-m", f"Add the {NAME} service")
    template = generated / "templates/service/services/{{name}}/src/emporium/{{name}}"
    settings = template / "settings.py.jinja"
    settings.write_text(settings.read_text() + "\n\n# A change of the template.\n")
    run(generated, "git", "commit", "--quiet", "-am", "Template change")
    run(
        generated,
        *("uv", "run", "--frozen", "copier", "update", "--defaults", "--quiet"),
        *("--answers-file", f"services/{NAME}/.copier-answers.yml"),
    )
    generated_settings = generated / f"services/{NAME}/src/emporium/{NAME}/settings.py"
    assert "# A change of the template." in generated_settings.read_text()
