"""GaussianMixture as a drop-in for scikit-learn's: warm starts, seeds, float32, verbose.

scikit-learn's own tests run on emkit in tests/sklearn_suites/; these pin the behaviours
they rely on with emkit's stricter checks (monotonicity="raise", exact equalities).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.mixture
from conftest import blobs

from emkit import GaussianMixture

X = blobs(300, 3, 3, seed=7, spread=3.0)


def test_warm_started_single_iterations_retrace_the_cold_fit() -> None:
    """max_iter=1 refits continue one trace: their lower bounds are the cold fit's, and
    they converge at the same iteration (scikit-learn's `while not converged_` loop)."""
    cold = GaussianMixture(3, random_state=0, tol=1e-6, monotonicity="raise").fit(X)
    assert cold.converged_
    warm = GaussianMixture(
        3, random_state=0, tol=1e-6, warm_start=True, max_iter=1, monotonicity="raise"
    )
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        for _ in range(cold.n_iter_ + 5):
            warm.fit(X)
            assert warm.n_iter_ == 1
            bounds.append(warm.lower_bound_)
            if warm.converged_:
                break
    assert warm.converged_
    np.testing.assert_allclose(bounds, cold.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-10)


def test_warm_start_on_other_data_is_no_monotonicity_failure() -> None:
    """A warm start may continue on other data, whose objective is lower: its first
    change is not a decrease of EM's objective, and it is not convergence either."""
    gm = GaussianMixture(3, random_state=0, warm_start=True, monotonicity="raise").fit(X)
    other = X * 1.5 + 2.0
    gm.set_params(max_iter=2, tol=1e-3)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="did not converge"):
        gm.fit(other)  # raises MonotonicityError if the first change were checked
    assert gm.lower_bounds_[0] < gm.lower_bounds_[1]


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_seed_gives_scikit_learns_initialization(init_params: str, legacy: bool) -> None:
    """An int seed or a RandomState draws the start as scikit-learn's mixture does."""

    def state() -> object:
        return np.random.RandomState(3) if legacy else 0

    kw = dict(init_params=init_params, max_iter=0)
    ours = GaussianMixture(3, random_state=state(), **kw).fit(X)
    theirs = sklearn.mixture.GaussianMixture(3, random_state=state(), **kw).fit(X)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-10, atol=1e-12)
    if init_params in ("kmeans", "random"):
        # (from seed rows alone, scikit-learn's weights are 1/n_samples each, summing to
        # K/n_samples; emkit's sum to 1)
        np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=1e-10)


def test_a_random_state_is_not_drawn_from_to_check_it() -> None:
    # scikit-learn's start (emkit's default 'auto' draws ten k-means++ seedings)
    rs = np.random.RandomState(5)
    GaussianMixture(3, random_state=rs, max_iter=0, init_params="kmeans").fit(X)
    after_fit = rs.randint(1000)
    rs = np.random.RandomState(5)
    sklearn.mixture.GaussianMixture(3, random_state=rs, max_iter=0).fit(X)
    assert rs.randint(1000) == after_fit


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_data_gives_float32_attributes_and_densities(covariance_type: str) -> None:
    X32 = X.astype(np.float32)
    f32 = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    f64 = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(f32, name).dtype == np.float32, name
        assert getattr(f64, name).dtype == np.float64, name
        np.testing.assert_allclose(getattr(f32, name), getattr(f64, name), rtol=2e-3, atol=1e-4)
    assert f32.score_samples(X32).dtype == f32.predict_proba(X32).dtype == np.float32
    assert f64.score_samples(X).dtype == np.float64
    assert f32.score(X32) == pytest.approx(f64.score(X), rel=1e-5)
    samples, _ = f32.sample(5)
    assert samples.shape == (5, 3)


def test_verbose_true_is_verbose_1(capsys: pytest.CaptureFixture[str]) -> None:
    GaussianMixture(3, random_state=0, verbose=True, verbose_interval=1).fit(X)
    assert "Iteration 1\t" in capsys.readouterr().err
