"""``emkit fit --e-step`` and ``--accelerate``: each reaches the fitted estimator (the same
fit as the Python call), variational fits are saved and predict, and the combinations an
estimator refuses end as one clear error line, without a traceback."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from emkit import GaussianMixture, MixtureModel, ModelBasedClustering
from emkit.cli import main
from emkit.io import load_model


def _blobs(n: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(3.0, 1.0, (n - n // 2, 2))])


@pytest.fixture
def blobs_csv(tmp_path: Path) -> Path:
    path = tmp_path / "blobs.csv"
    path.write_text("height,width\n" + "".join(f"{a!r},{b!r}\n" for a, b in _blobs().tolist()))
    return path


@pytest.fixture
def counts_csv(tmp_path: Path) -> Path:
    """Visits (counts), a smoker flag and a colour (text): two clusters."""
    rng = np.random.default_rng(1)
    z = rng.integers(0, 2, 80)
    visits = rng.poisson(np.where(z == 1, 9.0, 1.0))
    smoker = rng.random(80) < np.where(z == 1, 0.8, 0.1)
    colour = np.where(rng.random(80) < 0.8, np.where(z == 1, "red", "blue"), "green")
    path = tmp_path / "counts.csv"
    lines = [f"{v},{str(s).lower()},{c}\n" for v, s, c in zip(visits, smoker, colour, strict=True)]
    path.write_text("visits,smoker,colour\n" + "".join(lines))
    return path


CELL = ("init_params", "tol", "max_iter")


def _fit(data: Path, out: Path, *extra: str) -> int:
    return main(["fit", str(data), "--components", "2", "--out", str(out), "--no-plot", *extra])


def _labels(out: Path, name: str = "labels.csv") -> np.ndarray:
    with (out / name if name else out).open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return np.array([int(row[1]) for row in rows])


@pytest.mark.parametrize(
    ("e_step", "accelerate"),
    [("hard", None), ("monte-carlo", None), ("stochastic", None), ("exact", "squarem")],
)
def test_gaussian_variants_are_the_python_fit(blobs_csv, tmp_path, e_step, accelerate):
    extra = ["--covariance", "full", "--e-step", e_step]
    extra += [] if accelerate is None else ["--accelerate", accelerate]
    assert _fit(blobs_csv, tmp_path / "out", *extra) == 0
    model = load_model(tmp_path / "out" / "model.npz")
    assert (model.e_step, model.accelerate) == (e_step, accelerate)
    # the CLI's Gaussian candidates are ModelBasedClustering's cells (its start, tol, max_iter)
    cell = {k: v for k, v in ModelBasedClustering().get_params().items() if k in CELL}
    same = GaussianMixture(
        2, covariance_type="full", e_step=e_step, accelerate=accelerate, random_state=0, **cell
    ).fit(_blobs())
    np.testing.assert_array_equal(model.means_, same.means_)
    np.testing.assert_array_equal(model.n_iter_, same.n_iter_)


def test_hard_em_is_not_exact_em(blobs_csv, tmp_path):
    """The option changes the fit (overlapping clusters: hard EM ends elsewhere)."""
    for e_step in ("exact", "hard"):
        assert _fit(blobs_csv, tmp_path / e_step, "--covariance", "full", "--e-step", e_step) == 0
    exact = load_model(tmp_path / "exact" / "model.npz")
    hard = load_model(tmp_path / "hard" / "model.npz")
    assert not np.allclose(exact.covariances_, hard.covariances_, rtol=1e-3)


def test_variational_fit_of_a_mixed_table_is_saved_and_predicts(counts_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert _fit(counts_csv, out, "--e-step", "variational") == 0
    printed = capsys.readouterr().out
    assert "best by BIC: 2 components" in printed and f"wrote {out / 'model.npz'}" in printed
    model = load_model(out / "model.npz")
    assert isinstance(model, MixtureModel) and model.e_step == "variational"
    assert set(model.posteriors_) == set(model.family_.blocks)  # kept: q(theta) per block
    assert model.weight_concentration_.sum() == pytest.approx(80 + 2 * 0.5)  # alpha_0 = 1/K
    # each block took the weak prior from the data (variational Bayes needs a proper one)
    assert all(fam.prior is not None for _, fam in model.family_.blocks.values())
    predicted = tmp_path / "predicted.csv"
    assert main(["predict", str(out / "model.npz"), str(counts_csv), "--out", str(predicted)]) == 0
    assert _labels(out).tolist() == _labels(predicted, "").tolist()


@pytest.mark.parametrize(
    ("table", "extra", "match"),
    [
        (
            "blobs",
            ["--e-step", "variational"],
            r"--e-step variational fits Poisson, Bernoulli and categorical columns .* the "
            r"Gaussian columns height, width have no variational update here\. Use --e-step "
            r"exact, or choose other families for them with --family, like --family "
            r"height=poisson\.",
        ),
        (
            "counts",
            ["--e-step", "variational", "--family", "visits=gaussian"],
            r"the Gaussian columns visits have no variational update",
        ),
        (
            "blobs",
            ["--e-step", "monte-carlo", "--accelerate", "squarem"],
            r"--accelerate squarem cannot be combined with --e-step monte-carlo: SQUAREM "
            r"extrapolates a deterministic EM step.*Drop --accelerate, or use --e-step exact",
        ),
        (
            "counts",
            ["--e-step", "variational", "--accelerate", "squarem"],
            r"--accelerate squarem cannot be combined with --e-step variational",
        ),
        (
            "counts",
            ["--e-step", "stochastic", "--accelerate", "squarem"],
            r"--accelerate squarem cannot be combined with --e-step stochastic",
        ),
    ],
)
def test_refused_combinations_are_one_error_line(
    blobs_csv, counts_csv, tmp_path, capsys, table, extra, match
):
    data = blobs_csv if table == "blobs" else counts_csv
    assert _fit(data, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("emkit: error: ") and "Traceback" not in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything is written
    assert re.search(match, err), err


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--e-step", "variationa"], r"argument --e-step: invalid choice: 'variationa'"),
        (["--accelerate", "aitken"], r"argument --accelerate: invalid choice: 'aitken'"),
    ],
)
def test_unknown_variants_are_usage_errors(blobs_csv, tmp_path, capsys, extra, match):
    assert _fit(blobs_csv, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err
