"""Invariants of EM for Gaussian mixtures: monotone objective, additivity, equivalences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emkit import DegenerateComponentWarning, GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 150),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    reg_covar=st.sampled_from([1e-6, 1e-2, 1.0]),
    init_params=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
)
def test_log_likelihood_never_decreases(
    seed: int, n: int, d: int, k: int, covariance_type: str, reg_covar: float, init_params: str
) -> None:
    """EM never lowers the log-likelihood by more than the regularized M-step's own gap
    (zero for exact EM): monotonicity='raise' turns any larger decrease into an error."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.integers(0, 3, (n, 1)) * 3
    gm = GaussianMixture(
        k,
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        tol=0,
        max_iter=30,
        init_params=init_params,
        random_state=seed,
        monotonicity="raise",
    )
    with warnings.catch_warnings():
        # random small data may leave a component with no samples: that is mended, with a
        # warning, and must not break monotonicity
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        gm.fit(X)
    assert np.all(np.isfinite(gm.lower_bounds_))


def test_exact_em_trace_is_monotone_without_regularization() -> None:
    X = blobs(600, 3, 4, seed=7, spread=1.5)
    gm = GaussianMixture(
        4, reg_covar=0.0, tol=0, max_iter=200, random_state=0, monotonicity="raise"
    ).fit(X)
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-12 * abs(gm.lower_bound_))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunk_size_and_threads_do_not_change_the_fit(covariance_type: str) -> None:
    X = blobs(1000, 3, 3, seed=8)
    fits = [
        GaussianMixture(
            3,
            covariance_type=covariance_type,
            random_state=0,
            tol=0,
            max_iter=20,
            chunk_size=c,
            n_threads=t,
        ).fit(X)
        for c, t in [(None, 1), (1, 2), (7, 2), (1000, 1), (None, 2), (7, 1)]
    ]
    for fit in fits[1:]:
        for name in FITTED:
            np.testing.assert_allclose(
                getattr(fit, name), getattr(fits[0], name), rtol=1e-10, atol=1e-12
            )
    # the reduction runs in chunk order, so the thread count changes nothing at all
    for name in FITTED:
        np.testing.assert_array_equal(getattr(fits[2], name), getattr(fits[5], name))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type: str) -> None:
    X = blobs(200, 2, 3, seed=9)
    w = np.random.default_rng(0).integers(0, 4, len(X))
    start = GaussianMixture(
        3, covariance_type=covariance_type, random_state=1, max_iter=2, tol=0
    ).fit(X)
    init = dict(
        weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_
    )
    kw = dict(covariance_type=covariance_type, tol=0, max_iter=30, monotonicity="raise", **init)
    weighted = GaussianMixture(3, **kw).fit(X, sample_weight=w)
    repeated = GaussianMixture(3, **kw).fit(np.repeat(X, w, axis=0))
    for name in [*FITTED, "lower_bounds_"]:
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=1e-9, atol=1e-12
        )


def test_row_order_does_not_matter() -> None:
    X = blobs(300, 3, 3, seed=10)
    perm = np.random.default_rng(1).permutation(len(X))
    init = GaussianMixture(3, random_state=0, max_iter=1, tol=0).fit(X)
    kw = dict(
        weights_init=init.weights_,
        means_init=init.means_,
        precisions_init=init.precisions_,
        tol=1e-8,
        max_iter=200,
    )
    a = GaussianMixture(3, **kw).fit(X)
    b = GaussianMixture(3, **kw).fit(X[perm])
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_array_equal(a.predict(X)[perm], b.predict(X[perm]))


def test_responsibilities_sum_to_one_and_fit_predict_equals_predict() -> None:
    X = blobs(400, 2, 4, seed=11, spread=1.0)
    gm = GaussianMixture(4, random_state=0)
    labels = gm.fit_predict(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    np.testing.assert_allclose(gm.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict_proba(X).argmax(axis=1), labels)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_recovers_fitted_parameters(covariance_type: str) -> None:
    X = blobs(500, 2, 2, seed=12, spread=8.0)
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    S, y = gm.sample(100_000)
    assert S.shape == (100_000, 2) and np.all(np.diff(y) >= 0)
    np.testing.assert_allclose(np.bincount(y) / len(y), gm.weights_, atol=0.01)
    for k in range(2):
        np.testing.assert_allclose(S[y == k].mean(axis=0), gm.means_[k], atol=0.05)
    # refitting on the samples recovers the parameters
    refit = GaussianMixture(2, covariance_type=covariance_type, means_init=gm.means_).fit(S)
    np.testing.assert_allclose(refit.covariances_, gm.covariances_, rtol=0.05, atol=0.02)


def test_n_init_keeps_the_best_run() -> None:
    X = blobs(300, 2, 5, seed=13, spread=2.0)
    single = [GaussianMixture(5, init_params="random", random_state=s).fit(X) for s in range(3)]
    best = GaussianMixture(5, init_params="random", n_init=6, random_state=0).fit(X)
    assert best.lower_bound_ >= min(g.lower_bound_ for g in single)


def test_warm_start_continues_from_the_previous_fit() -> None:
    X = blobs(300, 2, 3, seed=14)
    gm = GaussianMixture(
        3, warm_start=True, max_iter=1, tol=0, random_state=0, init_params="random"
    )
    gm.fit(X)
    first = gm.lower_bound_
    gm.fit(X)
    assert gm.lower_bound_ > first
    cold = GaussianMixture(3, max_iter=2, tol=0, random_state=0, init_params="random").fit(X)
    assert gm.lower_bound_ == pytest.approx(cold.lower_bound_, rel=1e-12)
