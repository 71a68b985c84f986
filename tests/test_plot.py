"""emkit.plot, drawn with the Agg backend: what each figure holds, the palette beyond ten
clusters, clear errors for bad input, and the package without matplotlib."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import multivariate_normal  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

import emkit.plot as ep  # noqa: E402
from emkit import GaussianMixture, InputError, KMeans  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _data(n: int = 120, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    return rng.normal(size=(n, d)) + 4.0 * np.eye(3, d)[z]


@pytest.fixture(scope="module")
def gm() -> GaussianMixture:
    return GaussianMixture(3, random_state=0).fit(_data())


def _points(ax: Any) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets"))


# -- palette --------------------------------------------------------------------------------


def test_the_palette_stays_distinct_beyond_ten_and_twenty_colours() -> None:
    colours = np.array(ep.palette(25))
    assert colours.shape == (25, 3) and np.all((colours >= 0) & (colours <= 1))
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=2)
    # (tab20's closest pair is about 0.098 apart in RGB; the generated ones are farther)
    assert distances[np.triu_indices(25, 1)].min() > 0.09
    generated = distances[20:] + 9.0 * np.eye(25)[20:]  # (not each from itself)
    assert generated.min() >= 0.2
    tab10 = [tuple(c) for c in matplotlib.colormaps["tab10"].colors]
    assert ep.palette(10) == tab10 and ep.palette(0) == []
    assert len(set(ep.palette(200))) == 200


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True])
def test_the_palette_needs_a_count(bad: Any) -> None:
    with pytest.raises(InputError, match=r"n_colors must be an integer >= 0, got"):
        ep.palette(bad)


# -- trace ----------------------------------------------------------------------------------


def test_trace_draws_the_objective_the_bound_and_the_gap(gm: GaussianMixture) -> None:
    ax = ep.trace(gm)
    objective, bound = ax.lines
    T = gm.trace_.objective.shape[0]
    np.testing.assert_array_equal(objective.get_xdata(), np.arange(1, T + 1))
    np.testing.assert_array_equal(objective.get_ydata(), gm.trace_.objective)
    # bound[t] = L(q_t, theta_{t+1}) is drawn at the parameters it evaluates
    np.testing.assert_array_equal(bound.get_xdata(), np.arange(2, T + 2))
    np.testing.assert_array_equal(bound.get_ydata(), gm.trace_.bound)
    assert len(ax.collections) == 1  # the KL gap, shaded
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "log-likelihood" and labels[2].startswith("KL(q")


def test_trace_without_a_bound_draws_the_objective_alone() -> None:
    gm = GaussianMixture(2, accelerate="squarem", random_state=0).fit(_data())
    fig = Figure()
    ax = ep.trace(gm, ax=fig.add_subplot())
    assert len(ax.lines) == 1 and not ax.collections and ax.figure is fig


def test_trace_of_monte_carlo_em_draws_the_draw_count() -> None:
    from emkit.inference import MonteCarlo

    gm = GaussianMixture(2, e_step=MonteCarlo(n_draws=3), random_state=0).fit(_data())
    fig = Figure()
    ax = ep.trace(gm, ax=fig.add_subplot())
    counts = [other for other in fig.axes if other is not ax]
    assert len(counts) == 1 and counts[0].get_ylabel() == "Monte-Carlo draws a row"
    (line,) = counts[0].lines
    np.testing.assert_array_equal(line.get_ydata(), gm.trace_.draws)
    assert gm.trace_.draws[0] == 3


def test_trace_of_an_unfitted_model_is_a_clear_error() -> None:
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        ep.trace(GaussianMixture(2))


# -- bic ------------------------------------------------------------------------------------


RESULTS = {
    "n_components": [1, 2, 3, 1, 2, 3, 1, 2, 3],
    "covariance_type": ["VVV"] * 3 + ["EII"] * 3 + ["VEV"] * 3,
    "bic": [-900.0, -850.0, np.nan, -950.0, -870.0, -860.0, -910.0, -840.0, -845.0],
}


def test_bic_draws_a_curve_a_model_and_marks_the_best() -> None:
    ax = ep.bic(RESULTS)
    assert [line.get_label() for line in ax.lines] == ["VVV", "EII", "VEV"]
    vvv = ax.lines[0]
    np.testing.assert_array_equal(vvv.get_xdata(), [1, 2, 3])
    assert np.isnan(vvv.get_ydata()[2])  # a failed cell breaks the line
    (star,) = ax.collections
    np.testing.assert_array_equal(star.get_offsets(), [[2.0, -840.0]])  # mclust: highest
    assert "best: VEV, 2" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = ep.bic(RESULTS, best="min")  # scikit-learn's sign: lowest
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[1.0, -950.0]])


def test_bic_takes_a_fitted_selector_and_many_models_in_distinct_colours() -> None:
    pd = pytest.importorskip("pandas")
    names = [f"M{i}" for i in range(14)]
    table = pd.DataFrame(
        {
            "n_components": np.tile([1, 2], 14),
            "covariance_type": np.repeat(names, 2),
            "bic": np.arange(28.0),
        }
    )

    class Selector:
        results_ = table

    ax = ep.bic(Selector(), best=None)
    assert len(ax.lines) == 14 and not ax.collections
    assert len({line.get_color() for line in ax.lines}) == 14


def test_bic_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"results has no 'bic'"):
        ep.bic({"n_components": [1], "covariance_type": ["VVV"]})
    with pytest.raises(InputError, match=r"must be 1-D of one length, got shapes \(2,\), \(1,\)"):
        ep.bic({"n_components": [1, 2], "covariance_type": ["VVV"], "bic": [1.0, 2.0]})
    with pytest.raises(InputError, match=r"best must be 'max' .* got 'lowest'"):
        ep.bic(RESULTS, best="lowest")


# -- classification and uncertainty ---------------------------------------------------------


def test_classification_is_a_pairs_plot_of_every_row(gm: GaussianMixture) -> None:
    X = _data()
    fig = ep.classification(gm, X)
    axes = np.array(fig.axes).reshape(3, 3)
    for i in range(3):
        for j in range(3):
            if i == j:
                assert axes[i, j].patches  # the stacked histograms
            else:
                assert _points(axes[i, j]) == X.shape[0]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["component 0", "component 1", "component 2"]
    assert axes[2, 0].get_xlabel() == "x0" and axes[1, 0].get_ylabel() == "x1"


def test_classification_of_chosen_columns_by_name(gm: GaussianMixture) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_data(), columns=["a", "b", "c"])
    model = GaussianMixture(3, random_state=0).fit(frame)
    fig = ep.classification(model, frame, columns=["c", "a"])
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[1, 0].get_xlabel() == "c" and axes[1, 1].get_xlabel() == "a"
    assert _points(axes[0, 1]) == len(frame)


def test_twenty_five_clusters_have_twenty_five_colours_and_a_legend() -> None:
    X = _data(200, 2, seed=3)
    km = KMeans(25, n_init=1, random_state=0).fit(X)
    fig = ep.classification(km, X)
    assert len(fig.legends[0].get_texts()) == len(np.unique(km.labels_))
    colours = {tuple(c.get_facecolor()[0]) for c in fig.axes[1].collections}
    assert len(colours) == len(np.unique(km.labels_))


def test_uncertainty_grows_with_the_posterior_doubt(gm: GaussianMixture) -> None:
    X = _data()
    fig = ep.uncertainty(gm, X, columns=[0, 1])
    scatter = fig.axes[1].collections[0]
    u = 1.0 - gm.predict_proba(X).max(axis=1)
    order = np.argsort(u, kind="stable")
    np.testing.assert_allclose(scatter.get_array(), u[order])
    sizes = scatter.get_sizes()
    assert np.all(np.diff(sizes) >= 0) and sizes[-1] > sizes[0]
    assert len(fig.axes) == 5  # four panels and the colour bar


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([0, 3], r"columns\[1\] = 3 is out of range: X has 3 columns \(indices 0 to 2"),
        (["x0", "z"], r"columns\[1\] = 'z' is not a column of X, whose columns are"),
        ([1, -2], r"columns names column 'x1' twice"),
        ([], r"columns is empty"),
    ],
)
def test_bad_columns_are_a_clear_error(gm: GaussianMixture, columns: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ep.classification(gm, _data(), columns=columns)


def test_classification_and_uncertainty_need_a_fitted_model() -> None:
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        ep.classification(GaussianMixture(2), _data())
    km = KMeans(2, n_init=1).fit(_data())
    with pytest.raises(InputError, match=r"KMeans has no predict_proba"):
        ep.uncertainty(km, _data())


# -- density --------------------------------------------------------------------------------


def test_density_contours_the_marginal_of_the_chosen_columns(gm: GaussianMixture) -> None:
    X = _data()
    ax = ep.density(gm, X, columns=(0, 2), levels=6, grid=40)
    (contours,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    # the marginal over column 1, by scipy: sum_k pi_k N(x_02; mu_k,02, Sigma_k,02)
    lo, hi = X[:, [0, 2]].min(axis=0), X[:, [0, 2]].max(axis=0)
    pad = 0.05 * (hi - lo)
    g0, g2 = np.meshgrid(*(np.linspace(a, b, 40) for a, b in zip(lo - pad, hi + pad, strict=True)))
    grid = np.column_stack([g0.ravel(), g2.ravel()])
    dens = sum(
        w * multivariate_normal(m[[0, 2]], c[np.ix_([0, 2], [0, 2])]).pdf(grid)
        for w, m, c in zip(gm.weights_, gm.means_, gm.covariances_, strict=True)
    )
    assert contours.levels[0] >= 0 and contours.levels[-1] >= 0.5 * dens.max()
    assert contours.levels[-1] <= 1.5 * dens.max()
    assert _points(ax) >= X.shape[0] and ax.get_xlabel() == "x0" and ax.get_ylabel() == "x2"


def test_density_of_one_column_is_a_curve(gm: GaussianMixture) -> None:
    ax = ep.density(gm, _data(), columns=[1], grid=50)
    (curve,) = ax.lines
    assert curve.get_xdata().shape == (50,) and np.all(curve.get_ydata() > 0)


def test_density_bad_input_is_a_clear_error(gm: GaussianMixture) -> None:
    with pytest.raises(InputError, match=r"columns names 3 columns; emkit.plot.density draws"):
        ep.density(gm, _data(), columns=(0, 1, 2))
    with pytest.raises(InputError, match=r"grid must be an integer >= 2, got 1"):
        ep.density(gm, _data(), grid=1)
    with pytest.raises(InputError, match=r"KMeans has no score_samples"):
        ep.density(KMeans(2, n_init=1).fit(_data()), _data())
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        ep.density(GaussianMixture(2), _data())


# -- without matplotlib ---------------------------------------------------------------------


def test_without_matplotlib_the_package_imports_and_a_call_names_the_extra(
    gm: GaussianMixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import emkit.plot\n"
        "print(sorted(emkit.plot.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "trace" in done.stdout
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'not installed: pip install "emkit\[plot\]"'):
        ep.trace(gm)
    with pytest.raises(ImportError, match=r"emkit\[plot\]"):
        ep.palette(3)


# -- the command line -----------------------------------------------------------------------


def test_emkit_fit_writes_the_plots(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from emkit.cli import main

    path = tmp_path / "data.csv"
    X = _data(90)
    path.write_text("a,b,c\n" + "".join(f"{x:.6f},{y:.6f},{z:.6f}\n" for x, y, z in X))
    out = tmp_path / "out"
    argv = ["fit", str(path), "--components", "2,3", "--covariance", "full,diag"]
    assert main([*argv, "--out", str(out)]) == 0
    names = ["trace", "bic", "classification", "uncertainty", "density"]
    printed = capsys.readouterr().out
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {out / name}.png" in printed
    assert main([*argv, "--out", str(tmp_path / "none"), "--no-plot"]) == 0
    assert not list((tmp_path / "none").glob("*.png"))
