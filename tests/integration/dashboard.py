"""Every query of the Grafana dashboard, run against a real Prometheus that scraped a real daemon.

Each panel query, with the dashboard's variables filled in for the run's daemon and group, must
return a finite value; only targets the run need not produce (errors, forecasts) may stay empty,
and only while none of the series they read exist. Parsing alone would let a wrong label filter,
a lost `le` or a misspelt series show an empty panel forever.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
SELECTOR = re.compile(r"\bautoscaler_[a-z0-9_]+(?:\{[^}]*\})?")


class Api(Protocol):
    async def api(self, path: str, **params: str) -> Any: ...


@dataclass(frozen=True)
class Query:
    """One panel target: where it is shown and its PromQL with the variables filled in."""

    panel: str
    legend: str
    expr: str


def fill(expr: str, instance: str, group: str, window: str) -> str:
    """The query as Grafana would send it for one daemon, one group and `window` as rate interval."""
    instance_regex = re.escape(instance).replace("\\", "\\\\")
    return (
        expr.replace("$__rate_interval", window).replace("$instance", instance_regex).replace("$group", group)
    )


def panel_queries(instance: str, group: str, window: str) -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Query(panel["title"], target.get("legendFormat", ""), fill(target["expr"], instance, group, window))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries(instance: str) -> dict[str, str]:
    """The dashboard's template variables as plain queries (label_values(m, l) -> the series m)."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        definition = variable["definition"]
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
        assert match, f"variable {variable['name']}: unexpected definition {definition}"
        found[variable["name"]] = fill(match[1], instance, ".*", "1m")
    return found


async def produced(prometheus: Api, expr: str, window: str) -> bool:
    """Whether any series a query reads had samples in the last `window`."""
    for selector in SELECTOR.findall(expr):
        result = await prometheus.api("/api/v1/query", query=f"count(last_over_time({selector}[{window}]))")
        if result["result"]:
            return True
    return False


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


async def check(prometheus: Api, instance: str, group: str, window: str, quiet: set[str]) -> list[str]:
    """Run every query; returns the panel targets (`panel / legend`) that showed data.

    A target in `quiet` (errors, forecasts: the run need not produce them) may be empty, but only
    while none of its series exist; every other target must show a finite value. A target the
    caller has not classified fails as empty, so a new panel gets checked from the start.
    """
    for name, query in variable_queries(instance).items():
        result = (await prometheus.api("/api/v1/query", query=query))["result"]
        assert result, f"dashboard variable {name} would list nothing: {query}"
    shown = []
    for query in panel_queries(instance, group, window):
        label = f"{query.panel} / {query.legend}"
        result = (await prometheus.api("/api/v1/query", query=query.expr))["result"]
        if label in quiet and not await produced(prometheus, query.expr, window):
            assert not result, f"{label}: data although none of its series exist: {query.expr}"
            continue
        assert result, f"{label}: empty after a day of scaling: {query.expr}"
        assert finite(result), f"{label}: no finite value: {query.expr} -> {result}"
        shown.append(label)
    return shown
