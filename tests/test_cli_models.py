"""``emkit fit`` on every family, and ``predict`` / ``sample`` on every model type."""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import emkit
from emkit.cli import main
from emkit.cli._data import parse_family
from emkit.cli._progress import FitProgress
from emkit.io import load_model, save_model

pd = pytest.importorskip("pandas")


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _mixed_frame(n: int = 40, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    z = np.repeat([0, 1], n // 2)
    frame = pd.DataFrame(
        {
            "size": np.where(z == 0, rng.normal(0, 1, n), rng.normal(6, 1, n)),
            "colour": np.where(z == 0, "red", "blue"),
            "visits": pd.array(rng.poisson(np.where(z == 0, 1.0, 8.0)), dtype="Int64"),
            "member": (z == 1).astype(int),
        }
    )
    frame.loc[3, "size"] = np.nan
    frame.loc[5, "colour"] = None
    frame.loc[7, "visits"] = pd.NA
    return frame


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    _mixed_frame().to_csv(path)  # with pandas' unnamed index column
    return path


def _fit(data: Path, out: Path, *extra: str) -> int:
    return main(["fit", str(data), "--out", str(out), "--no-plot", "--max-iter", "30", *extra])


def test_fit_infers_every_family_and_writes_row_ids(
    mixed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _fit(mixed_csv, out, "--components", "1-3") == 0
    captured = capsys.readouterr()
    title = re.sub(r"\s+", " ", captured.out)
    assert (
        "gaussian full (size); categorical (colour); poisson (visits); bernoulli (member)" in title
    )
    assert "best by BIC: 2 components" in captured.out
    assert "the unnamed first column is the row ids (0, 1, 2, ... as pandas" in captured.err
    labels = _read_csv(out / "labels.csv")
    assert labels[0] == ["row", "label", "uncertainty"]
    assert [int(r[0]) for r in labels[1:]] == list(range(40))
    label = np.array([int(r[1]) for r in labels[1:]])
    # the two groups are found, missing cells and all
    assert len(set(label[:20])) == 1 and len(set(label[20:])) == 1 and label[0] != label[-1]
    uncertainty = np.array([float(r[2]) for r in labels[1:]])
    assert ((uncertainty >= 0) & (uncertainty <= 0.5)).all()

    model = load_model(out / "model.npz")
    assert isinstance(model, emkit.MixtureModel) and model.n_components == 2
    assert list(model.feature_names_in_) == ["size", "colour", "visits", "member"]
    frame = _mixed_frame()
    frame["colour"] = frame["colour"].astype("category")
    frame["member"] = frame["member"].astype(bool)
    np.testing.assert_allclose(
        [float(r[2]) for r in labels[1:]], 1 - model.predict_proba(frame).max(axis=1)
    )
    summary = _read_csv(out / "summary.csv")
    best = next(r for r in summary[1:] if r[7] == "true")
    assert float(best[2]) == pytest.approx(model.score(frame) * 40, rel=1e-12)
    assert float(best[3]) == pytest.approx(model.bic(frame), rel=1e-12)
    assert float(best[4]) == pytest.approx(model.aic(frame), rel=1e-12)


def test_fit_with_missing_values_in_a_numeric_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X = _mixed_frame()[["size"]].assign(other=np.arange(40) * 0.1 + 0.05)
    path = tmp_path / "d.csv"
    X.to_csv(path, index=False)
    assert _fit(path, tmp_path / "out", "--components", "1-2") == 0
    out = capsys.readouterr().out
    assert "Gaussian mixtures on" in out and "full" in out and "diag" in out
    model = load_model(tmp_path / "out" / "model.npz")
    assert isinstance(model, emkit.GaussianMixture)
    # the command fits the candidates with ModelBasedClustering (its tol for Gaussian
    # tables: 1e-5)
    reference = emkit.ModelBasedClustering(
        [1, 2], covariance_types=["full", "diag"], random_state=0, max_iter=30, tol=1e-5
    ).fit(X.to_numpy())
    np.testing.assert_allclose(model.means_, reference.best_estimator_.means_)


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("visits=categorical", "categorical (colour, visits)"),
        ("member=poisson,colour=categorical", "poisson (visits, member)"),
        ("categorical", "categorical (size, colour, visits, member)"),
    ],
)
def test_family_option(
    mixed_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    family: str,
    expected: str,
) -> None:
    assert _fit(mixed_csv, tmp_path / "o", "--components", "2", "--family", family) == 0
    assert expected in re.sub(r"\s+", " ", capsys.readouterr().out)


def test_all_gaussian_family_sweeps_covariances(
    mixed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--components", "2", "--family", "gaussian", "--columns", "^colour"]
    assert _fit(mixed_csv, tmp_path / "o", *args, "--covariance", "tied,spherical") == 0
    captured = capsys.readouterr()
    assert "gaussian (size, visits, member)" in re.sub(r"\s+", " ", captured.out)
    assert "spherical" in captured.out
    # the clusters split the binary column 'member', which leaves the shared covariance
    # singular: a collapsed candidate, a note and never the best (issue 14)
    assert "note: 2 components, tied: not used: components 0, 1 collapsed" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "poisson"], r"Column 'size' holds -?\d.*poisson family needs counts"),
        (["--family", "colour=gaussian"], r"Column 'colour' holds text .*colour=categorical"),
        (["--family", "size=bernoulli"], r"Column 'size' holds .*bernoulli family needs 0/1"),
        (["--family", "height=poisson"], r"--family names column 'height', which is not among"),
        (["--family", "gamma"], r"argument --family: unknown family 'gamma'"),
        (["--family", "poisson,n=categorical"], r"mixes a family for every column"),
        (["--columns", "colour:visits", "--covariance", "diag"], r"--covariance applies to"),
        (["--seed", "-1"], r"argument --seed: expected an integer from 0"),
        (["--columns", "^size,^colour,^visits,^member"], r"leaves only the index column"),
        (["--delimiter", ";;"], r"argument --delimiter: expected one character"),
    ],
)
def test_fit_errors(
    mixed_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert _fit(mixed_csv, tmp_path / "o", "--components", "2", *args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_negative_integers_are_measurements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.csv"
    frame = pd.DataFrame({"delta": np.arange(40) % 7 - 3, "n": np.arange(40) % 5})
    frame.to_csv(path, index=False)
    assert _fit(path, tmp_path / "o", "--components", "1") == 0
    assert "gaussian full (delta); poisson (n)" in re.sub(r"\s+", " ", capsys.readouterr().out)


def test_parse_family() -> None:
    assert parse_family(" Gaussian ") == {None: "gaussian"}
    assert parse_family("a=poisson,b=auto") == {None: "auto", "a": "poisson", "b": "auto"}


def test_delimiter_and_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "semi.txt"
    frame = _mixed_frame()[["size", "visits"]].fillna(1)
    frame.insert(0, "id", [f"r{i}" for i in range(40)])
    frame.to_csv(path, sep=";", index=False)
    args = ["--components", "2", "--delimiter", ";", "--columns", "size:visits"]
    assert _fit(path, tmp_path / "o", *args) == 0
    assert "gaussian full (size); poisson (visits)" in re.sub(r"\s+", " ", capsys.readouterr().out)
    assert main(["fit", str(path), "--out", str(tmp_path / "p"), "--delimiter", ","]) == 2
    assert "reads as a single column" in capsys.readouterr().err


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise PermissionError(13, "Permission denied")


def test_out_is_checked_before_fitting(
    mixed_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def no_fit(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("fitted before checking --out")

    monkeypatch.setattr("emkit.cli._main._fit_and_report", no_fit)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _fit(mixed_csv, blocker / "sub") == 2
    assert f"--out {str(blocker / 'sub')!r} cannot be created: {str(blocker)!r} is not a" in (
        capsys.readouterr().err
    )
    # a directory that cannot be made: named, and nothing is left behind
    nested = tmp_path / "new" / "deeper"
    monkeypatch.setattr("emkit.cli._main.tempfile.TemporaryFile", _refuse)
    assert _fit(mixed_csv, nested) == 2
    assert f"--out {str(nested)!r} cannot be created (Permission denied)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "new").exists()

    target = tmp_path / "readonly"
    target.mkdir()
    assert _fit(mixed_csv, target) == 2
    err = capsys.readouterr().err
    assert f"--out {str(target)!r} is not writable (Permission denied)" in err
    assert ".tmp" not in err


def test_verbose_shows_iterations_and_rate(
    mixed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(mixed_csv, tmp_path / "o", "--components", "2", "--verbose") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("2 components, full: ")]
    # (after the lines that announce the family and the initialization)
    assert lines[0].startswith("2 components, full: Family: Product(")
    assert lines[1] == "2 components, full: Initialization 0"
    assert re.search(r"iteration 1, objective -?\d.*, [\d,]+ rows/s", lines[2])
    assert any("iteration 3," in line for line in lines)
    # the library logged through the CLI's handler only, and it is gone
    assert logging.getLogger("emkit").handlers == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_with_rich() -> None:
    pytest.importorskip("rich")
    stream = _Terminal()
    X = np.random.default_rng(0).normal(size=(50, 2))
    with FitProgress("2 components, full", 50, 20, stream=stream):
        emkit.GaussianMixture(2, verbose=1, verbose_interval=1, random_state=0).fit(X)
    assert "2 components, full" in stream.getvalue() and "rows/s" in stream.getvalue()


def test_each_warning_is_one_note_per_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    # (rows within 2e-7 of each other, held at the degeneracy floor: exactly equal ones
    # are singular to round-off, which reg_covar=0 refuses)
    ties = 5.0 + 2e-7 * np.array([[1.0, -1.0]] * 5 + [[-1.0, 1.0]] * 5)
    rows = np.vstack([rng.normal(size=(40, 2)), ties])
    path = tmp_path / "d.csv"
    np.savetxt(path, rows, delimiter=",", header="a,b", comments="")
    # (3 components collapse onto the repeated row: a note, and 1 component is kept)
    args = ["--components", "1,3", "--covariance", "diag", "--reg-covar", "0"]
    assert _fit(path, tmp_path / "o", *args) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "zero variance" in line]
    assert len(notes) == 1
    assert re.search(r"\(\d+ times in this fit; the first is shown\)", notes[0])


# -- predict and sample on every model type ------------------------------------------------


def _numeric_frame() -> Any:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (30, 3)), rng.normal(5, 1, (30, 3))])
    return pd.DataFrame(X, columns=["a", "b", "c"])


MODELS = {
    "GaussianMixture": lambda: emkit.GaussianMixture(2, random_state=0),
    "MixtureOfPPCA": lambda: emkit.MixtureOfPPCA(2, n_factors=1, random_state=0),
    "MixtureOfFactorAnalyzers": lambda: emkit.MixtureOfFactorAnalyzers(
        2, n_factors=1, random_state=0
    ),
    "MixtureModel": lambda: emkit.MixtureModel(emkit.families.Gaussian("diag"), 2, random_state=0),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_and_sample_mixtures(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _numeric_frame()
    model = MODELS[name]().fit(frame)
    path = save_model(model, tmp_path / "m.npz")
    data = tmp_path / "d.csv"
    frame[["c", "a", "b"]].to_csv(data, index=False)  # matched by name
    assert main(["predict", str(path), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,label,uncertainty"
    assert [int(line.split(",")[1]) for line in lines[1:]] == model.predict(frame).tolist()
    assert main(["predict", str(path), str(data), "--proba"]) == 0
    proba = np.array([line.split(",")[1:] for line in capsys.readouterr().out.splitlines()[1:]])
    np.testing.assert_allclose(proba.astype(float), model.predict_proba(frame))
    assert main(["sample", str(path), "-n", "4", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "a,b,c,component" and len(lines) == 5


@pytest.mark.parametrize("cls", [emkit.PPCA, emkit.FactorAnalysis])
def test_predict_and_sample_factor_models(
    cls: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _numeric_frame()
    model = cls(2, random_state=0).fit(frame)
    path = save_model(model, tmp_path / "m.npz")
    data = tmp_path / "d.csv"
    frame.to_csv(data)
    assert main(["predict", str(path), str(data)]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0] == ["row", "factor0", "factor1"] and rows[1][0] == "0"
    np.testing.assert_allclose(np.array(rows[1:])[:, 1:].astype(float), model.transform(frame))
    assert main(["predict", str(path), str(data), "--proba"]) == 2
    assert f"a {cls.__name__} has factors, not components. Drop --proba" in (
        capsys.readouterr().err
    )
    assert main(["sample", str(path), "-n", "3", "--seed", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "a,b,c" and len(lines) == 4


def test_kmeans_predicts_and_cannot_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _numeric_frame()
    model = emkit.KMeans(2, random_state=0, n_init=1).fit(frame)
    path = save_model(model, tmp_path / "m.npz")
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    assert main(["predict", str(path), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,label"
    assert [int(line.split(",")[1]) for line in lines[1:]] == model.predict(frame).tolist()
    assert main(["predict", str(path), str(data), "--proba"]) == 2
    assert "a KMeans assigns each row to its nearest center" in capsys.readouterr().err
    assert main(["sample", str(path), "-n", "3"]) == 2
    err = capsys.readouterr().err
    assert "A KMeans model cannot draw samples" in err and "Traceback" not in err


def test_mixed_model_file_predicts_and_samples_categories(
    mixed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _fit(mixed_csv, out, "--components", "2") == 0
    capsys.readouterr()
    assert main(["predict", str(out / "model.npz"), str(mixed_csv)]) == 0
    predicted = capsys.readouterr().out.splitlines()
    assert predicted == (out / "labels.csv").read_text().splitlines()
    assert main(["sample", str(out / "model.npz"), "-n", "20", "--seed", "0"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["size", "colour", "visits", "member", "component"]
    assert {r[1] for r in rows[1:]} <= {"red", "blue"}
    assert all(r[2].isdigit() and r[3] in ("0", "1") for r in rows[1:])


def test_fit_picks_mclusts_model_on_diabetes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 14: a single k-means start picked a spurious 8-component diag model; mclust
    # 6.0.0 picks VVV,3 with BIC -4751.316 (its sign; the summary shows scikit-learn's)
    data = Path(__file__).parent / "data" / "diabetes.csv"
    assert _fit(data, tmp_path / "o", "--family", "gaussian", "--components", "1-9") == 0
    out = capsys.readouterr().out
    assert "best by BIC: 3 components, covariance full (BIC 4751.3" in out
