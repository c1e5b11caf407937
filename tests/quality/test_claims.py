"""The README's figures against fresh measurements: bench/claims.py's deterministic part, as `make test` runs it."""

import subprocess
import sys
from types import ModuleType

import pytest

from digits.inference.predictor import Predictor
from tests.helpers import ROOT, bench_module


@pytest.fixture(scope="module")
def claims() -> ModuleType:
    return bench_module("claims")


def test_every_deterministic_figure_in_the_readme_holds():
    r = subprocess.run([sys.executable, "bench/claims.py", "--fast"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every figure agrees" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "| yes |" in line]
    assert len(rows) >= 20, r.stdout  # each figure found in the README and checked


def test_a_figure_off_by_its_last_digit_is_caught(claims):
    readme = claims.documentation()
    [accuracy] = [c for c in claims.CLAIMS if c.measure == "test_accuracy"]
    shipped = Predictor().metadata["test_accuracy"]  # what the README states, four digits like "0.9931"
    meta, right, off = {"test_accuracy": shipped}, float(shipped), round(float(shipped) - 0.0001, 4)
    rows, ok = claims.check([accuracy], {"test_accuracy": right}, readme, meta)
    assert ok, rows
    rows, ok = claims.check([accuracy], {"test_accuracy": off}, readme, meta)
    assert not ok
    assert "| NO |" in rows[0]
    rows, ok = claims.check([accuracy], {"test_accuracy": right}, readme, {"test_accuracy": str(off)})
    assert not ok  # the weights' metadata is held to the README too


def test_a_figure_missing_from_the_readme_is_caught(claims):
    [accuracy] = [c for c in claims.CLAIMS if c.measure == "test_accuracy"]
    rows, ok = claims.check([accuracy], {"test_accuracy": 0.9937}, "no figures here", {"test_accuracy": "0.9937"})
    assert not ok
    assert "not found" in rows[0]


def test_timings_are_reported_but_never_fail(claims):
    [minutes] = [c for c in claims.CLAIMS if c.measure == "fast_minutes"]
    rows, ok = claims.check([minutes], {"fast_minutes": 9.0}, claims.documentation(), {})
    assert ok
    assert "no (timing)" in rows[0]


@pytest.mark.parametrize(
    ("stated", "value", "tolerance", "expected"),
    [
        ("53.4", 53.35, 0, True),  # a tie reads either way
        ("53.3", 53.35, 0, True),
        ("53.4", 53.3, 0, False),
        ("100", 100.0, 0, True),
        ("1.000", 0.9995, 0, True),
        ("1.000", 0.9994, 0, False),
        ("99.18", 99.30, 0.15, True),
        ("99.18", 99.40, 0.15, False),
    ],
)
def test_exact_means_to_the_last_printed_digit(claims, stated, value, tolerance, expected):
    assert claims.agrees(stated, value, tolerance) is expected


def test_a_realism_range_off_by_its_last_digit_is_caught(claims):
    readme, measured = claims.documentation(), claims.measure_realism()
    [lowest] = [c for c in claims.CLAIMS if c.measure == "realism.photo.accuracy.lowest"]
    rows, ok = claims.check([lowest], measured, readme, {})
    assert ok, rows
    rows, ok = claims.check([lowest], {lowest.measure: measured[lowest.measure] - 0.001}, readme, {})
    assert not ok, rows


def test_the_realism_table_reads_back_as_the_benchmark_wrote_it(claims, tmp_path, monkeypatch):
    realism = claims.bench_realism
    rows = {
        "pen 0.03": dict(zip(realism.COLUMNS, [0.974, 0.01, 0.008, 0.002], strict=True)),
        "slant": dict(zip(realism.COLUMNS, [0.9704, 0.0119, 0.0, 1.0], strict=True)),
    }
    back = realism.read(realism.table(rows))
    assert back.keys() == rows.keys()
    for name, row in rows.items():
        assert back[name] == pytest.approx(row, abs=0.0005)  # to the last printed digit, 0.1 points
    # A table that lacks a condition the benchmark draws today is stale, not a figure.
    stale = tmp_path / "REALISM.md"
    stale.write_text(realism.table(rows))
    monkeypatch.setattr(realism, "OUT", stale)
    with pytest.raises(RuntimeError, match="today's conditions"):
        claims.measure_realism()
