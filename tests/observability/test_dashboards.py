"""The Grafana dashboards in charts/emporium/dashboards/.

Statically: every file is accepted by Grafana's dashboard schema (the
Grafana Foundation SDK's strict decoding and constraints), keeps the
structural rules Grafana relies on, and every query is PromQL that
Prometheus' own parser accepts, naming only metrics the kit defines or the
SLO rules record. Against the running system: every metric name a query
uses is really exposed by a service (or recorded by the rules, or one of
Prometheus' own series), checked against a live scrape.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import observability_prometheus
import observability_tools as tools
import pytest


@pytest.mark.unit
def test_every_dashboard_is_accepted_by_grafanas_schema() -> None:
    checker = tools.dashboardcheck()
    files = sorted(tools.DASHBOARDS.glob("*.json"))
    assert len(files) >= 4, "overview, Kafka and outbox, breakers and degradation, SLOs"
    result = subprocess.run(
        [str(checker), "schema", *map(str, files)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(files)


@pytest.mark.unit
def test_the_schema_check_rejects_a_broken_dashboard(tmp_path: Path) -> None:
    """The checker is strict: a misspelt panel field and a wrong type both fail."""
    board = tools.dashboards()["emporium-overview.json"]
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    panel["titel"] = panel.pop("title")
    panel["gridPos"]["w"] = "12"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(board))
    result = subprocess.run(
        [str(tools.dashboardcheck()), "schema", str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "unexpected field 'titel'" in result.stdout
    assert "gridPos.w" in result.stdout


@pytest.mark.unit
def test_dashboards_have_what_grafana_and_the_sidecar_rely_on() -> None:
    """What the schema leaves optional but provisioning needs: unique ids, a layout that fits."""
    uids = set()
    for name, board in tools.dashboards().items():
        assert board["uid"] not in uids, f"{name}: uid {board['uid']} used twice"
        uids.add(board["uid"])
        assert len(board["uid"]) <= 40, name
        assert "emporium" in board["tags"], name
        variables = {v["name"] for v in board["templating"]["list"]}
        assert {"datasource", "namespace"} <= variables, name
        ids = [panel["id"] for panel in tools.panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        occupied: set[tuple[int, int]] = set()
        for panel in tools.panels(board):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{name}: {panel['title']} overflows"
            cells = {
                (grid["x"] + dx, grid["y"] + dy)
                for dx in range(grid["w"])
                for dy in range(grid["h"])
            }
            assert not cells & occupied, f"{name}: {panel['title']} overlaps another panel"
            occupied |= cells
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{name}: {panel['title']}"
            for target in panel["targets"]:
                assert target["expr"].strip(), f"{name}: {panel['title']}: empty query"
                # Scoped to one environment, except the SLO objectives (same everywhere).
                assert 'namespace="$namespace"' in target["expr"] or (
                    "emporium:slo_objective:ratio" in target["expr"]
                ), f"{name}: {panel['title']}: query not scoped to $namespace"


@pytest.mark.unit
def test_every_query_is_promql_over_metrics_the_services_define() -> None:
    known = (
        tools.sample_names(tools.metric_families())
        | tools.recorded_names()
        | tools.PROMETHEUS_BUILTINS
    )
    parsed = tools.parse(tools.queries() + tools.variable_queries())
    assert len(parsed) > 40
    for query, result in parsed.items():
        where = f"{query.dashboard}: {query.panel}: {query.expr}"
        assert not result.get("error"), f"{where}\n{result.get('error')}"
        assert result["metrics"], f"{where}: selects no metric"
        unknown = set(result["metrics"]) - known
        assert not unknown, f"{where}: {sorted(unknown)} defined nowhere"


@pytest.mark.e2e
def test_every_query_uses_only_metrics_the_running_services_expose(prometheus: Any) -> None:
    """Checked against a live scrape: each service's /metrics page and Prometheus' series."""
    exposed: set[str] = set()
    for service, port in observability_prometheus.ADMIN_PORTS.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            families = tools.families_in_exposition(response.read().decode())
        assert families, f"{service} exposes no metrics"
        exposed |= tools.sample_names(families)
    exposed |= prometheus.metric_names()
    known = exposed | tools.recorded_names() | tools.PROMETHEUS_BUILTINS
    unknown_anywhere = {}
    for query, result in tools.parse(tools.queries() + tools.variable_queries()).items():
        missing = set(result["metrics"]) - known
        if missing:
            unknown_anywhere[f"{query.dashboard}: {query.panel}"] = sorted(missing)
    assert not unknown_anywhere, unknown_anywhere
