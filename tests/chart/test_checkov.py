"""checkov's Kubernetes checks on the rendered output of every environment and
ci scenario: one checkov run over all of them (it is slow to start), no
failure allowed; the skipped checks and their reasons are in checkov.yaml.
checkov is the pinned one `make setup` installs in its own environment
(.cache/bin/checkov; docs/decisions/chart.md)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import chartlib
import pytest
from chartlib import ROOT

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).with_name("checkov.yaml")


def pinned(name: str) -> str:
    text = (ROOT / "scripts" / "versions.env").read_text()
    match = re.search(rf"^{name}=(\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} is not pinned in scripts/versions.env"
    return match.group(1)


def test_every_skipped_check_has_a_written_reason() -> None:
    skips = [line for line in CONFIG.read_text().splitlines() if re.match(r"\s*- CKV", line)]
    assert skips
    for line in skips:
        check, _, reason = line.partition("#")
        assert re.fullmatch(r"\s*- CKV2?_K8S_\d+\s*", check), line
        assert len(reason.strip()) > 40, f"no reason next to {check.strip()}"


def test_checkov_finds_no_failure(tmp_path: Path) -> None:
    checkov = chartlib.BIN / "checkov"
    if not checkov.exists():
        pytest.fail(f"checkov is not installed ({checkov}): run make setup")
    version = pinned("CHECKOV_VERSION")
    environment = ROOT / ".cache" / "uv-tools" / "checkov"
    if not list(environment.glob(f"lib/python3*/site-packages/checkov-{version}.dist-info")):
        pytest.fail(f"{checkov} is not checkov {version} (scripts/versions.env): run make setup")
    for name in chartlib.ALL_SCENARIOS:
        (tmp_path / f"{name}.yaml").write_text(chartlib.render_text("helm3", name))
    command = [
        str(checkov),
        "--config-file",
        str(CONFIG),
        "--directory",
        str(tmp_path),
        "--output",
        "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.stdout.strip(), result.stderr
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    per_file: dict[str, dict[str, int]] = {}
    failures = []
    for report in reports:
        for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in report["results"][outcome]:
                name = Path(check["file_path"]).stem
                counts = per_file.setdefault(name, {"passed": 0, "failed": 0, "skipped": 0})
                counts[outcome.split("_")[0]] += 1
                if outcome == "failed_checks":
                    failures.append(
                        f"{name}: {check['check_id']} {check['check_name']} on {check['resource']}"
                    )
    for name, counts in sorted(per_file.items()):
        print(f"checkov {name}: {counts}")
    assert set(per_file) == set(chartlib.ALL_SCENARIOS), "checkov did not read every rendering"
    assert all(c["passed"] > 100 for c in per_file.values())
    assert not failures, "\n".join(failures)
    assert result.returncode == 0, result.stderr
