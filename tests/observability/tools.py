"""The checking tools the observability tests use, as `make setup` installed them.

* ``dashboardcheck`` (tests/observability/dashboardcheck/): Grafana's dashboard
  schema (Grafana Foundation SDK) and Prometheus' PromQL parser, built by
  `make setup` with the Go toolchain from the pinned go.mod/go.sum into
  .cache/bin;
* ``promtool``: Debian's, installed by `make setup`.

Nothing here installs or builds: a missing or outdated tool fails the test
with "run make setup".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "emporium" / "dashboards"
RULES = ROOT / "charts" / "emporium" / "rules"
CHECKER_SOURCE = Path(__file__).resolve().parent / "dashboardcheck"
CHECKER = ROOT / ".cache" / "bin" / "dashboardcheck"


def state_dir() -> Path:
    """Where the local runner keeps its state: logs, the span file."""
    return Path(os.environ.get("EMPORIUM_STATE_DIR", ROOT / ".run"))


#: Series that come from Prometheus itself, not from a scrape of the services.
PROMETHEUS_BUILTINS = frozenset({"ALERTS", "ALERTS_FOR_STATE", "up"})


def dashboardcheck() -> Path:
    """The checker `make setup` built; fails if it is missing or older than its source."""
    if not CHECKER.exists():
        raise RuntimeError(f"the dashboard checker {CHECKER} is not built: run make setup")
    built = CHECKER.stat().st_mtime
    stale = [p.name for p in CHECKER_SOURCE.iterdir() if p.is_file() and p.stat().st_mtime > built]
    if stale:
        raise RuntimeError(
            f"the dashboard checker {CHECKER} is older than {', '.join(sorted(stale))}: "
            "run make setup"
        )
    return CHECKER


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise RuntimeError("promtool is not installed: run make setup")
    return path


# -- dashboards -----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str

    def promql(self) -> str:
        """The expression with Grafana's variables replaced by plausible values."""
        text = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", self.expr)
        return re.sub(r"\$\{?(\w+)\}?", r"\1", text)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries() -> list[Query]:
    found = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                found.append(Query(name, panel["title"], target["expr"]))
    return found


def variable_queries() -> list[Query]:
    """Template variables' ``label_values(metric, label)`` queries, as a selector."""
    found = []
    for name, board in dashboards().items():
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((?P<selector>[^,]+),\s*\w+\)", variable["query"])
            assert match, f"{name}: variable {variable['name']}: unexpected {variable['query']!r}"
            found.append(Query(name, f"variable {variable['name']}", match["selector"]))
    return found


def parse(queries: list[Query]) -> dict[Query, dict[str, Any]]:
    """Each query parsed by Prometheus' parser: ``{"metrics": [...], "error": ...}``."""
    checker = dashboardcheck()
    lines = "".join(json.dumps(query.promql()) + "\n" for query in queries)
    result = subprocess.run(
        [str(checker), "promql"], input=lines, capture_output=True, text=True, check=True
    )
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(parsed) == len(queries)
    return dict(zip(queries, parsed, strict=True))


# -- rules ----------------------------------------------------------------------


def recorded_names() -> set[str]:
    """Names the SLO recording rules produce."""
    return set(re.findall(r"^\s*- record:\s*(\S+)", _rules_text(), re.MULTILINE))


def _rules_text() -> str:
    return "\n".join(path.read_text() for path in sorted(RULES.glob("*.yaml")))


def metric_families() -> dict[str, str]:
    """Metric families the kit and the services define (their metrics.py): name -> type."""
    source = "\n".join(
        path.read_text() for path in sorted(ROOT.glob("services/*/src/emporium/*/metrics.py"))
    )
    return {
        name: kind.lower()
        for kind, name in re.findall(r"(Counter|Gauge|Histogram)\(\s*\"(emporium_\w+)\"", source)
    }


def sample_names(families: dict[str, str]) -> set[str]:
    """The sample names a Prometheus scrape shows for these families."""
    names = set()
    for name, kind in families.items():
        if kind == "counter":
            base = name.removesuffix("_total")
            names |= {base + "_total", base + "_created"}
        elif kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
        else:
            names.add(name)
    return names


def families_in_exposition(text: str) -> dict[str, str]:
    """``# TYPE`` lines of a /metrics page: every family, with or without samples yet."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
