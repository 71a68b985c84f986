"""The benchmark script keeps working (a smoke run on shrunk data; no timing is asserted)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_gmm.py"


@pytest.mark.skipif(not BENCH.exists(), reason="needs the source tree")
def test_bench_quick_run_reports_every_workload(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--in-process", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert len(report["results"]) == 5
    for workload in report["results"]:
        # emkit and scikit-learn agree from the same start, in every configuration
        assert set(workload["configs"]) == {"sklearn", "emkit64", "emkit32"}


MIXED = BENCH.parent / "bench_mixed.py"


@pytest.mark.skipif(not MIXED.exists(), reason="needs the source tree")
def test_mixed_bench_quick_run(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "mixed.json"
    result = subprocess.run(
        [sys.executable, str(MIXED), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report["seconds_per_iteration"]) == {"mixed", "gaussian_diag", "sklearn_diag"}
    assert report["mixed_over_diag"] > 0


BENCH_PPCA = BENCH.with_name("bench_ppca.py")


@pytest.mark.skipif(not BENCH_PPCA.exists(), reason="needs the source tree")
def test_ppca_bench_quick_run_reports_the_comparison(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench_ppca.json"
    result = subprocess.run(
        [sys.executable, str(BENCH_PPCA), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())["result"]
    assert {"emkit_seconds", "sklearn_seconds", "ratio", "target_met"} <= set(report)
    # EM reaches PCA's subspace and the closed-form maximum
    assert report["em_converged"]
    assert report["max_principal_angle"] < 1e-4
    assert report["loglik_rel_closed_form"] < 1e-8
    assert report["missing"]["em_iterations"] >= 1


BENCH_KMEANS = BENCH.with_name("bench_kmeans.py")


@pytest.mark.skipif(not BENCH_KMEANS.exists(), reason="needs the source tree")
def test_kmeans_bench_quick_run_reports_both_libraries(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench_kmeans.json"
    result = subprocess.run(
        [sys.executable, str(BENCH_KMEANS), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "met" in result.stdout or "missed" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["seconds_per_iteration"]) == {"sklearn", "emkit"}
    assert report["sklearn_over_emkit"] > 0 and isinstance(report["target_met"], bool)
    # the same start and the same iterations: the same centers
    assert report["n_iter"] == {"sklearn": 5, "emkit": 5}
    assert report["center_max_rel_diff"] < 1e-10 and report["labels_agree"] == 1.0


BENCH_MISSING = BENCH.with_name("bench_missing.py")


@pytest.mark.skipif(not BENCH_MISSING.exists(), reason="needs the source tree")
def test_missing_values_bench_quick_run(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench_missing.json"
    result = subprocess.run(
        [sys.executable, str(BENCH_MISSING), "--quick", "--threads", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report["seconds_per_iteration"]) == {
        "emkit_missing",
        "emkit_complete",
        "sklearn_complete",
    }
    assert 0.15 < report["missing_fraction"] < 0.25
    assert report["missing_over_complete"] > 0
    assert report["emkit_threads"] == 1
