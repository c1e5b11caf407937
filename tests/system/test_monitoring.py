"""The alerts and the dashboard (deploy/prometheus/, deploy/grafana/) against what the service exports: every
metric and label they name exists, promtool accepts the rules, and each alert fires on what it is for."""

import json
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from digits.imaging.png import encode
from tests.helpers import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
# The expressions that wrap one other.
Wrapping = promql_parser.AggregateExpr | promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr


def expressions() -> dict[str, str]:
    """Every PromQL expression in the rules and the dashboard, by where it is; Grafana's interval as a range."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    found = {f"alert {r['alert']}": r["expr"] for group in rules["groups"] for r in group["rules"]}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']!r}, {target['refId']}"] = target["expr"].replace("$__rate_interval", "1m")
    return found


def selectors(node: object) -> Iterator[promql_parser.VectorSelector]:
    """The series a parsed expression reads."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(node, Wrapping):
        yield from selectors(node.expr)


def unknown(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What an expression names that the service doesn't export: metrics, and labels of the metrics it has."""
    missing: list[str] = []
    for selector in selectors(promql_parser.parse(expr)):
        if selector.name not in exported:
            missing.append(str(selector.name))  # None for a selector by labels alone, which is missing too
            continue
        missing += [
            f"{selector.name}{{{m.name}}}" for m in selector.matchers.matchers if m.name not in exported[selector.name]
        ]
    return missing


@pytest.fixture
def exported(client, mnist_test, clothes_pngs) -> dict[str, set[str]]:
    """Each series name /metrics gives after every kind of answer and a correction, with its label names."""
    images, _ = mnist_test
    png = encode(255 - images[0])
    answer = client.post("/predict", files={"file": ("d.png", png, "image/png")}).json()
    client.post("/predict/number", files={"file": ("n.png", encode(255 - np.hstack(images[:3])), "image/png")})
    clothes = [("files", (f"{i}.png", c, "image/png")) for i, c in enumerate(clothes_pngs[:20])]
    answers = client.post("/predict/batch", files=clothes).json()["predictions"]
    assert any(a.get("not_a_digit") for a in answers)  # so that the doubtful answers' series exist
    stored = client.post("/feedback", json={"prediction_id": answer["prediction_id"], "label": 1})
    assert stored.status_code == 201, stored.text
    families = text_string_to_metric_families(client.get("/metrics").text)
    names: dict[str, set[str]] = {}
    for family in families:
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_every_alert_and_panel_names_only_what_the_service_exports(exported):
    found = expressions()
    assert len(found) >= 14
    assert {where: unknown(expr, exported) for where, expr in found.items() if unknown(expr, exported)} == {}


def test_a_misspelt_metric_or_label_is_caught(exported):
    assert unknown('sum(rate(prediction_total{endpoint="/predict"}[5m]))', exported) == ["prediction_total"]
    assert unknown('rate(predictions_total{endpont="/predict"}[5m])', exported) == ["predictions_total{endpont}"]


def test_the_dashboard_has_a_panel_for_each_view():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    text = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("http_requests_total", "http_request_duration_seconds_bucket", "predictions_uncertain_total",
                   "predictions_not_a_digit_total", "prediction_confidence_bucket", "corrections_total",
                   "digits_model_info"):  # fmt: skip
        assert metric in text
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}  # whichever Prometheus it is imported on


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus (make debs)")
def test_promtool_accepts_the_rules_and_each_alert_fires_on_its_case():
    for args in (
        ["check", "rules", "alerts.yaml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yaml"],
    ):
        result = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
