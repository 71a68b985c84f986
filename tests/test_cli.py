"""The ``emkit`` command line, run in-process through ``main([...])`` and once as a process."""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import emkit
from emkit import EmkitError, GaussianMixture
from emkit.cli import main
from emkit.cli._main import parse_components, parse_covariances
from emkit.cli._report import covariances_2d, format_table
from emkit.io import load_model, save_model


def _blobs(n: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(6.0, 1.0, (n - n // 2, 2))])


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    path = tmp_path / "blobs.csv"
    X = _blobs()
    path.write_text("height,width\n" + "".join(f"{a},{b}\n" for a, b in X.tolist()))
    return path


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _fit(data: Path, out: Path, *extra: str) -> int:
    argv = ["fit", str(data), "--components", "1-2", "--covariance", "full,diag"]
    return main([*argv, "--out", str(out), "--no-plot", *extra])


# -- argument parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", [3]), ("1-6", [1, 2, 3, 4, 5, 6]), ("2,4,8", [2, 4, 8]), ("1-3, 8,2", [1, 2, 3, 8])],
)
def test_parse_components(text: str, expected: list[int]) -> None:
    assert parse_components(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("three", r"'three' is not a number of components: write a number like 3, a range"),
        ("1-", r"'1-' is not a number of components"),
        ("", r"'' is not a number of components"),
        ("2,,3", r"'' is not a number of components"),
        ("0", r"'0': a mixture needs at least 1 component"),
        ("0-3", r"'0-3': a mixture needs at least 1 component"),
        ("6-1", r"the range '6-1' is empty: write the smaller number first, like 1-6"),
        ("1.5", r"'1.5' is not a number of components"),
    ],
)
def test_parse_components_errors(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_components(text)


def test_components_error_through_main(data_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(data_csv), "--components", "6-1"]) == 2
    err = capsys.readouterr().err
    assert "emkit fit: error: argument --components: the range '6-1' is empty" in err


def test_parse_covariances() -> None:
    assert parse_covariances("full,diag") == ["full", "diag"]
    assert parse_covariances("DIAG, full, diag") == ["diag", "full"]
    assert parse_covariances("all") == ["full", "tied", "diag", "spherical"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown covariance type 'ful': choose"):
        parse_covariances("full,ful")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "d.csv", "--n-init", "0"], r"argument --n-init: expected an integer >= 1, got 0"),
        (["fit", "d.csv", "--columns", "a,,b"], r"'a,,b' has an empty column name"),
        (["fit", "d.csv", "--header", "maybe"], r"argument --header: invalid choice: 'maybe'"),
        (["sample", "m.npz", "-n", "x"], r"expected an integer >= 1, got 'x'"),
        (["sample", "m.npz"], r"the following arguments are required: -n/--n-samples"),
        ([], r"the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_return_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"emkit {emkit.__version__}"
    assert main(["fit", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--components K" in out and "--covariance TYPES" in out and "--no-plot" in out


# -- fit -------------------------------------------------------------------------------


def test_fit_writes_model_labels_and_summary(
    data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _fit(data_csv, out) == 0
    captured = capsys.readouterr()
    for column in ("components", "covariance", "log-likelihood", "BIC", "AIC", "iterations"):
        assert column in captured.out
    assert "best by BIC: 2 components" in captured.out
    for name in ("model.npz", "labels.csv", "summary.csv"):
        assert f"wrote {out / name}" in captured.out
    assert not (out / "clusters.png").exists()

    model = load_model(out / "model.npz")
    assert isinstance(model, GaussianMixture) and model.n_components == 2
    # the model file keeps the column names: predict from a table with them
    X = pytest.importorskip("pandas").DataFrame(_blobs(), columns=["height", "width"])
    labels = _read_csv(out / "labels.csv")
    assert labels[0] == ["row", "label", "uncertainty"] and len(labels) == X.shape[0] + 1
    assert [int(r[0]) for r in labels[1:]] == list(range(1, X.shape[0] + 1))
    assert [int(r[1]) for r in labels[1:]] == model.predict(X).tolist()
    uncertainty = 1.0 - model.predict_proba(X).max(axis=1)
    np.testing.assert_allclose([float(r[2]) for r in labels[1:]], uncertainty, rtol=1e-12)
    assert list(model.feature_names_in_) == ["height", "width"]

    summary = _read_csv(out / "summary.csv")
    assert summary[0] == [
        "components",
        "covariance",
        "log_likelihood",
        "bic",
        "aic",
        "iterations",
        "converged",
        "best",
    ]
    rows = summary[1:]
    assert [(r[0], r[1]) for r in rows] == [
        ("1", "full"),
        ("1", "diag"),
        ("2", "full"),
        ("2", "diag"),
    ]
    assert [r[7] for r in rows].count("true") == 1
    best = next(r for r in rows if r[7] == "true")
    assert float(best[3]) == min(float(r[3]) for r in rows)
    assert (int(best[0]), best[1]) == (model.n_components, model.covariance_type)
    assert float(best[2]) == pytest.approx(model.score(X) * X.shape[0])
    assert float(best[3]) == pytest.approx(model.bic(X))


def test_fit_selects_columns_and_uses_the_options(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    X = _blobs()
    path.write_text("id,a,b\n" + "".join(f"row{i},{a},{b}\n" for i, (a, b) in enumerate(X)))
    out = tmp_path / "out"
    argv = ["--columns", "a,2", "--seed", "3", "--tol", "1e-4", "--n-init", "2", "--init", "random"]
    assert _fit(path, out, *argv, "--dtype", "float32", "--reg-covar", "1e-5") == 0
    model = load_model(out / "model.npz")
    params = model.get_params()
    assert params["random_state"] == 3 and params["tol"] == 1e-4 and params["n_init"] == 2
    assert params["init_params"] == "random" and params["dtype"] == "float32"
    assert params["reg_covar"] == 1e-5 and model.n_features_in_ == 2


def test_fit_without_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{a},{b}\n" for a, b in _blobs()))
    assert _fit(path, tmp_path / "out", "--header", "no") == 0
    assert len(_read_csv(tmp_path / "out" / "labels.csv")) == 61


def test_fit_on_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", _blobs())
    assert _fit(tmp_path / "d.npy", tmp_path / "out") == 0
    assert load_model(tmp_path / "out" / "model.npz").n_features_in_ == 2


def test_fit_skips_candidates_with_more_components_than_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n0\n0.1\n5\n5.2\n")
    argv = ["fit", str(path), "--components", "1-2,5,9", "--covariance", "diag"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "note: skipping 5, 9 components: more than the 4 rows of the data." in captured.err
    assert "note: no plot" not in captured.err  # --no-plot asks for none
    assert len(_read_csv(tmp_path / "out" / "summary.csv")) == 3


def test_fit_with_too_few_rows_for_every_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n0\n1\n")
    assert main(["fit", str(path), "--components", "3-4", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "emkit: error: The data has 2 rows, fewer than every number of components" in err
    assert not (tmp_path / "o").exists()


def test_fit_reports_warnings_as_notes(
    data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(data_csv, tmp_path / "out", "--max-iter", "1") == 0
    captured = capsys.readouterr()
    assert "note: 2 components, full:" in captured.err
    assert "no" in captured.out  # the converged column


def test_fit_skips_candidates_that_fail_numerically(
    data_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = GaussianMixture.fit

    def fit(self: GaussianMixture, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        if self.n_components == 2 and self.covariance_type == "full":
            raise EmkitError("ill-defined covariance")
        return original(self, X, y, sample_weight)

    monkeypatch.setattr(GaussianMixture, "fit", fit)
    assert _fit(data_csv, tmp_path / "out") == 0
    assert "note: 2 components, full: not fitted: ill-defined covariance" in capsys.readouterr().err
    assert len(_read_csv(tmp_path / "out" / "summary.csv")) == 4


def test_fit_fails_when_every_candidate_fails(
    data_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fit(self: GaussianMixture, *args: Any, **kwargs: Any) -> Any:
        raise EmkitError("ill-defined covariance")

    monkeypatch.setattr(GaussianMixture, "fit", fit)
    assert _fit(data_csv, tmp_path / "out") == 2
    assert "emkit: error: Every candidate model failed to fit" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tol", "-1"], r"emkit: error: tol must be a finite number >= 0.0, got -1.0."),
        (["--columns", "nope"], r"emkit: error: Data file .* has no column 'nope'"),
    ],
)
def test_fit_input_errors(
    data_csv: Path,
    tmp_path: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _fit(data_csv, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert re.search(message, err)
    assert "Traceback" not in err


def test_fit_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(tmp_path / "absent.csv")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("emkit: error: Data file ")
    assert "does not exist" in captured.err and "Traceback" not in captured.err


def test_fit_out_is_a_file(
    data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("x")
    assert _fit(data_csv, tmp_path / "taken") == 2
    assert "--out '" in capsys.readouterr().err


def test_fit_plot_without_matplotlib_is_a_note(
    data_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "out"
    argv = ["fit", str(data_csv), "--components", "2", "--covariance", "full", "--out", str(out)]
    assert main(argv) == 0
    assert 'no plot: matplotlib is not installed (pip install "emkit[cli]")' in (
        capsys.readouterr().err
    )
    assert not (out / "clusters.png").exists()


def test_fit_plot_needs_two_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n" + "".join(f"{v}\n" for v in _blobs()[:, 0]))
    assert main(["fit", str(path), "--components", "2", "--out", str(tmp_path / "o")]) == 0
    assert "no plot: clusters.png shows the first two columns" in capsys.readouterr().err


def test_fit_draws_the_plot(data_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    argv = ["fit", str(data_csv), "--components", "2", "--covariance", "all", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_table_without_rich(
    data_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.table", None)
    assert _fit(data_csv, tmp_path / "out") == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("components"))
    assert lines[header].split() == [
        "components",
        "covariance",
        "log-likelihood",
        "BIC",
        "AIC",
        "iterations",
        "converged",
    ]
    rows = lines[header + 2 : header + 6]
    assert sum(row.endswith("<- best") for row in rows) == 1


def test_summary_table_with_rich(
    data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")
    assert _fit(data_csv, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "log-likelihood" in out and "iterations" in out  # not cut to 80 columns
    assert "* best: the lowest BIC" in out


def test_format_table_aligns_numbers_right() -> None:
    text = format_table(["k", "name"], [["1", "full"], ["10", "diag"]])
    assert text.splitlines() == [" k  name", "--  ----", " 1  full", "10  diag"]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_covariances_2d_match_the_full_matrices(covariance_type: str) -> None:
    X = np.random.default_rng(0).normal(size=(80, 3)) * [1.0, 2.0, 3.0]
    model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    got = covariances_2d(model.covariances_, covariance_type, 2)
    cov = model.covariances_
    if covariance_type == "full":
        full = cov
    elif covariance_type == "tied":
        full = np.broadcast_to(cov, (2, 3, 3))
    elif covariance_type == "diag":
        full = np.stack([np.diag(c) for c in cov])
    else:
        full = cov[:, None, None] * np.eye(3)
    np.testing.assert_allclose(got, full[:, :2, :2])
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        covariances_2d(model.covariances_, "banded", 2)


# -- predict and sample -----------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    model = GaussianMixture(2, random_state=0).fit(_blobs())
    return save_model(model, tmp_path / "model.npz")


def test_predict_labels_to_stdout(
    model_file: Path, data_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(model_file), str(data_csv)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,label,uncertainty"
    labels = [int(line.split(",")[1]) for line in lines[1:]]
    assert labels == load_model(model_file).predict(_blobs()).tolist()
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 61))


def test_predict_probabilities_to_a_file(
    model_file: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "proba.csv"
    assert main(["predict", str(model_file), str(data_csv), "--proba", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    rows = _read_csv(out)
    assert rows[0] == ["row", "p0", "p1"]
    proba = np.array([r[1:] for r in rows[1:]], dtype=float)
    np.testing.assert_array_equal(proba, load_model(model_file).predict_proba(_blobs()))


def test_predict_matches_columns_by_feature_name(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    X = _blobs()
    frame = pd.DataFrame(X, columns=["a", "b"])
    model = GaussianMixture(2, random_state=0).fit(frame)
    path = save_model(model, tmp_path / "m.npz")
    data = tmp_path / "d.csv"
    data.write_text("b,extra,a\n" + "".join(f"{b},7,{a}\n" for a, b in X.tolist()))
    out = tmp_path / "labels.csv"
    assert main(["predict", str(path), str(data), "--out", str(out)]) == 0
    assert [int(r[1]) for r in _read_csv(out)[1:]] == model.predict(frame).tolist()


def test_predict_wrong_number_of_columns(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,b,c\n1,2,3\n")
    assert main(["predict", str(model_file), str(data)]) == 2
    err = capsys.readouterr().err
    assert "has 3 columns (a, b, c) but the model was fitted on 2. Select the model's" in err
    assert main(["predict", str(model_file), str(data), "--columns", "a,c"]) == 0


def test_predict_with_a_file_that_is_not_a_model(
    data_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(data_csv), str(data_csv)]) == 2
    assert "emkit: error: " in capsys.readouterr().err


def test_sample(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(model_file), "-n", "5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    lines = first.splitlines()
    assert lines[0] == "x0,x1,component" and len(lines) == 6
    assert all(int(line.split(",")[2]) in (0, 1) for line in lines[1:])
    out = tmp_path / "s.csv"
    assert main(["sample", str(model_file), "-n", "5", "--seed", "1", "--out", str(out)]) == 0
    assert out.read_text() == first
    assert main(["sample", str(model_file), "--n-samples", "5", "--seed", "2"]) == 0
    assert capsys.readouterr().out != first


def test_sample_uses_feature_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd = pytest.importorskip("pandas")
    model = GaussianMixture(2, random_state=0).fit(pd.DataFrame(_blobs(), columns=["a", "b"]))
    path = save_model(model, tmp_path / "m.npz")
    assert main(["sample", str(path), "-n", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "a,b,component"


# -- demo, as the installed command runs it ------------------------------------------------


@pytest.mark.slow
def test_demo_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "emkit.cli", "demo", "--no-plot", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Old Faithful geyser data: 272 eruptions")
    for name in ("model.npz", "labels.csv", "summary.csv"):
        assert f"wrote {out / name}" in result.stdout
    model = load_model(out / "model.npz")
    assert isinstance(model, GaussianMixture) and model.n_features_in_ == 2
    assert len((out / "labels.csv").read_text().splitlines()) == 273
    assert len(_read_csv(out / "summary.csv")) == 1 + 6 * 4
    assert not (out / "clusters.png").exists()
