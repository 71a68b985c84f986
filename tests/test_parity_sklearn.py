"""emkit.GaussianMixture against scikit-learn as the oracle, from identical starts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from emkit import GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _start(X: np.ndarray, k: int, covariance_type: str, seed: int = 0) -> dict:
    """Starting weights, means and precisions from a short sklearn run from random data."""
    sk = SkGaussianMixture(
        k,
        covariance_type=covariance_type,
        max_iter=1,
        init_params="random_from_data",
        random_state=seed,
        tol=0,
    )
    with pytest.warns(Warning):  # one iteration never converges
        sk.fit(X)
    return {"weights_init": sk.weights_, "means_init": sk.means_, "precisions_init": sk.precisions_}


def _sklearn_trace(X: np.ndarray, k: int, covariance_type: str, start: dict, n_iter: int) -> list:
    """Per-iteration log-likelihood of scikit-learn's own E- and M-steps."""
    sk = SkGaussianMixture(k, covariance_type=covariance_type, **start)
    sk._initialize_parameters(X, np.random.RandomState(0))
    trace = []
    for _ in range(n_iter):
        log_prob_norm, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)
        trace.append(log_prob_norm)
    return trace


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_per_iteration_loglik_matches_sklearn(dataset: np.ndarray, covariance_type: str) -> None:
    k, n_iter = 3, 25
    start = _start(dataset, k, covariance_type)
    expected = _sklearn_trace(dataset, k, covariance_type, start, n_iter)
    gm = GaussianMixture(
        k, covariance_type=covariance_type, tol=0, max_iter=n_iter, monotonicity="raise", **start
    ).fit(dataset)
    np.testing.assert_allclose(gm.lower_bounds_, expected, rtol=1e-8)
    assert gm.n_iter_ == n_iter and gm.lower_bound_ == gm.lower_bounds_[-1]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_model_matches_sklearn(covariance_type: str) -> None:
    from conftest import DATASETS

    X = DATASETS["blobs3d"]()
    start = _start(X, 3, covariance_type, seed=4)
    kw = dict(covariance_type=covariance_type, tol=1e-10, max_iter=500, **start)
    ours = GaussianMixture(3, monotonicity="raise", **kw).fit(X)
    ref = SkGaussianMixture(3, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_reaches_a_comparable_optimum(init_params: str) -> None:
    from conftest import DATASETS

    X = DATASETS["blobs3d"]()
    ours = GaussianMixture(3, init_params=init_params, n_init=3, random_state=0).fit(X)
    ref = SkGaussianMixture(3, init_params=init_params, n_init=3, random_state=0).fit(X)
    assert ours.converged_
    assert ours.score(X) == pytest.approx(ref.score(X), abs=1e-3)
