"""The SLO rules of charts/emporium/rules/, with promtool and as the chart renders them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import observability_tools as tools
import pytest
import yaml

HERE = Path(__file__).resolve().parent
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: Burn rates of the SRE workbook's multi-window alerts: (long, short, factor).
PAGE = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
TICKET = (("1d", "2h", 3.0), ("3d", "6h", 1.0))
CHART = tools.ROOT / "charts" / "emporium"
HELM = tools.ROOT / ".cache" / "bin" / "helm3"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def rule_files() -> list[Path]:
    files = sorted(tools.RULES.glob("*.yaml"))
    assert files
    return files


@pytest.mark.unit
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(rule_files())


@pytest.mark.unit
def test_promtool_unit_tests_fire_and_stay_silent() -> None:
    tests = HERE / "promtool" / "slo_test.yaml"
    spec = yaml.safe_load(tests.read_text())
    # Each alert has at least one case where it fires and one where it must not.
    fired: set[str] = set()
    silent: set[str] = set()
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in all_rules() if "alert" in rule}
    assert fired == alerts, alerts - fired
    assert silent == alerts, alerts - silent
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def all_rules(text: str | None = None) -> list[dict[str, Any]]:
    if text is not None:
        documents = [yaml.safe_load(text)]
    else:
        documents = [yaml.safe_load(path.read_text()) for path in rule_files()]
    return [rule for doc in documents for group in doc["groups"] for rule in group["rules"]]


@pytest.mark.unit
def test_every_slo_has_all_windows_and_consistent_burn_rate_alerts() -> None:
    rules = all_rules()
    objectives = {
        rule["labels"]["slo"]: float(re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"])[1])  # type: ignore[index]
        for rule in rules
        if rule.get("record") == "emporium:slo_objective:ratio"
    }
    assert set(objectives) == {
        "product-page-availability",
        "product-page-latency",
        "checkout-availability",
        "checkout-latency",
        "fraud-decision-freshness",
    }
    for slo, objective in objectives.items():
        windows = {
            rule["record"].removeprefix("emporium:slo_errors:ratio_rate")
            for rule in rules
            if rule.get("record", "").startswith("emporium:slo_errors:")
            and rule["labels"]["slo"] == slo
        }
        assert windows == set(WINDOWS), slo
        alerts = [r for r in rules if "alert" in r and r["labels"]["slo"] == slo]
        assert {a["labels"]["severity"] for a in alerts} == {"critical", "warning"}, slo
        budget = round(1 - objective, 6)
        for alert in alerts:
            pairs = PAGE if alert["labels"]["severity"] == "critical" else TICKET
            for long, short, factor in pairs:
                for window in (long, short):
                    expected = (
                        f'emporium:slo_errors:ratio_rate{window}{{slo="{slo}"}} '
                        f"> ({factor:g} * {budget:g})"
                    )
                    assert expected in alert["expr"], f"{slo}: missing {expected}"


@pytest.mark.unit
def test_the_chart_renders_the_rules_scoped_to_its_namespace(tmp_path: Path) -> None:
    if not HELM.exists():
        pytest.fail(f"helm 3 is not installed ({HELM}): run make setup")
    rendered = subprocess.run(
        [
            str(HELM), "template", "emporium", str(CHART), "--namespace", "emporium-staging",
            "--kube-version", "1.37.0", "-f", str(CHART / "values-staging.yaml"),
            "--set", "monitoring.prometheusRule.enabled=true",
            "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
            "--show-only", "templates/slo-rules.yaml",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    (rule,) = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "emporium-staging"
    plain = tmp_path / "rendered.yaml"
    plain.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(plain))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = all_rules(plain.read_text())
    assert len(rules) == len(all_rules())
    for rendered_rule in rules:
        # Every selector is scoped, so environments sharing a Prometheus never mix.
        selectors = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}", rendered_rule["expr"])
        constant = rendered_rule.get("record") == "emporium:slo_objective:ratio"
        assert selectors or constant, rendered_rule
        for selector in selectors:
            assert 'namespace="emporium-staging"' in selector, selector
        if "record" in rendered_rule:
            assert rendered_rule["labels"]["namespace"] == "emporium-staging"
    without_api = subprocess.run(
        [
            str(HELM), "template", "emporium", str(CHART), "--namespace", "emporium-staging",
            "--kube-version", "1.37.0", "--set", "monitoring.prometheusRule.enabled=true",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "emporium-slos" not in without_api
