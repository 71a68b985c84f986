"""PPCA and factor analysis by EM: reference values, invariants, equivalences, missing
values, sampling and errors. Every fit that checks the EM trace uses
monotonicity="raise", so any decrease of the log-likelihood fails the test."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal, norm
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis
from sklearn.exceptions import NotFittedError

from emkit import PPCA, FactorAnalysis, InputError, load_model, save_model
from emkit.engines import InMemoryEngine, ReducedEngine, RowSource
from emkit.inference import fit_em
from emkit.models.latent_factor import (
    LatentFactor,
    LatentFactorMoments,
    noise_structure,
    orthomax,
)

ESTIMATORS = [PPCA, FactorAnalysis]
FITTED = ["components_", "mean_", "noise_variance_"]


def factor_data(
    n: int = 1000,
    d: int = 8,
    q: int = 2,
    seed: int = 0,
    scales: tuple[float, ...] = (3.0, 2.0),
    noise: str = "isotropic",
    offset: float = 5.0,
) -> np.ndarray:
    """Rows x = W z + mu + noise, W with column scales ``scales``; diagonal noise has
    standard deviations in [0.5, 1.5], isotropic noise 1."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q)) * np.asarray(scales[:q])
    sd = rng.uniform(0.5, 1.5, d) if noise == "diagonal" else np.ones(d)
    mu = rng.normal(size=d) * offset
    return rng.normal(size=(n, q)) @ W.T + rng.normal(size=(n, d)) * sd + mu


def with_missing(X: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """``X`` with a random ``fraction`` of its entries set to NaN (no row left empty)."""
    out = X.copy()
    drop = np.random.default_rng(seed).uniform(size=X.shape) < fraction
    drop[drop.all(axis=1), 0] = False
    out[drop] = np.nan
    return out


def closed_form_ppca(X: np.ndarray, q: int) -> tuple[float, np.ndarray, float]:
    """Tipping & Bishop's maximum: per-sample log-likelihood, W W^T and sigma^2."""
    d = X.shape[1]
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    lam, U = lam[::-1], U[:, ::-1]
    s2 = lam[q:].mean()
    W = U[:, :q] * np.sqrt(lam[:q] - s2)
    loglik = -0.5 * (d * np.log(2 * np.pi) + np.log(lam[:q]).sum() + (d - q) * np.log(s2) + d)
    return float(loglik), W @ W.T, float(s2)


# -- reference values -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ppca_reaches_the_closed_form_maximum(seed: int) -> None:
    X = factor_data(2000, 10, 3, seed=seed, scales=(4.0, 3.0, 2.0))
    ppca = PPCA(3, tol=1e-13, max_iter=10_000, random_state=seed, monotonicity="raise").fit(X)
    assert ppca.converged_
    loglik, WWt, s2 = closed_form_ppca(X, 3)
    assert abs(ppca.score(X) - loglik) <= 1e-8 * abs(loglik)
    W = ppca.components_.T
    np.testing.assert_allclose(W @ W.T, WWt, atol=1e-6 * np.abs(WWt).max())
    np.testing.assert_allclose(ppca.noise_variance_, s2, rtol=1e-7)
    np.testing.assert_allclose(ppca.mean_, X.mean(axis=0), rtol=1e-12)
    # components_ is the canonical representative U_q (Lambda_q - sigma^2 I)^(1/2)
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    expected = (U[:, ::-1][:, :3] * np.sqrt(lam[::-1][:3] - s2)).T
    np.testing.assert_allclose(np.abs(ppca.components_), np.abs(expected), atol=1e-5)


def test_ppca_subspace_and_noise_match_sklearn_pca() -> None:
    X = factor_data(3000, 12, 3, seed=2, scales=(4.0, 3.0, 2.0))
    n = X.shape[0]
    ppca = PPCA(3, tol=1e-12, max_iter=10_000, random_state=0, monotonicity="raise").fit(X)
    pca = PCA(3, svd_solver="full").fit(X)
    axes = ppca.components_ / np.linalg.norm(ppca.components_, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((axes * pca.components_).sum(axis=1)), 1.0, atol=1e-9)
    # scikit-learn divides by n - 1, maximum likelihood by n
    np.testing.assert_allclose(ppca.noise_variance_ * n / (n - 1), pca.noise_variance_, rtol=1e-7)


def test_factor_analysis_matches_sklearn_at_convergence() -> None:
    X = factor_data(3000, 8, 2, seed=3, noise="diagonal")
    ours = FactorAnalysis(2, tol=1e-14, max_iter=20_000, random_state=0, monotonicity="raise")
    ours.fit(X)
    ref = SklearnFactorAnalysis(2, tol=1e-10, max_iter=20_000, svd_method="lapack").fit(X)
    assert ours.converged_

    def loglik(model: object) -> float:  # one evaluator for both parameter sets
        return float(multivariate_normal(model.mean_, model.get_covariance()).logpdf(X).mean())

    # equal (both stop where round-off hides the change, ~1e-13 relative) or higher
    assert loglik(ours) >= loglik(ref) - 1e-11 * abs(loglik(ref))
    np.testing.assert_allclose(ours.get_covariance(), ref.get_covariance(), atol=1e-4)
    np.testing.assert_allclose(ours.noise_variance_, ref.noise_variance_, rtol=1e-4)


@pytest.mark.parametrize(
    ("n", "d", "q", "seed"), [(500, 8, 1, 11), (800, 10, 2, 12), (600, 12, 3, 13)]
)
def test_factor_analysis_matches_sklearn_on_several_data_sets(
    n: int, d: int, q: int, seed: int
) -> None:
    """Same model covariance (so loadings equal up to rotation), noise and score as
    scikit-learn's FactorAnalysis with its default SVD, both run to convergence."""
    X = factor_data(n, d, q, seed=seed, scales=(4.0, 3.0, 2.5)[:q], noise="diagonal")
    ours = FactorAnalysis(q, tol=1e-10, random_state=0, monotonicity="raise").fit(X)
    ref = SklearnFactorAnalysis(q, tol=1e-6, max_iter=3000, random_state=0).fit(X)
    assert ours.converged_
    W, W_ref = ours.components_.T, ref.components_.T
    np.testing.assert_allclose(W @ W.T, W_ref @ W_ref.T, atol=1e-3 * np.abs(W_ref).max() ** 2)
    np.testing.assert_allclose(ours.noise_variance_, ref.noise_variance_, rtol=1e-3)
    # scikit-learn stops a little short of the maximum, ours goes on
    assert 0 <= ours.score(X) - ref.score(X) < 1e-8
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-4)
    assert ours.loglike_[-1] == pytest.approx(ref.loglike_[-1], rel=1e-9)


@pytest.mark.parametrize("rotation", ["varimax", "quartimax"])
def test_rotation_matches_sklearn_and_leaves_the_model_unchanged(rotation: str) -> None:
    X = factor_data(600, 12, 3, seed=13, scales=(4.0, 3.0, 2.5), noise="diagonal")
    plain = FactorAnalysis(3, tol=1e-10, random_state=0).fit(X)
    rotated = FactorAnalysis(3, rotation=rotation, tol=1e-10, random_state=0).fit(X)
    ref = SklearnFactorAnalysis(3, rotation=rotation, tol=1e-6, max_iter=3000).fit(X)
    # the same columns up to order and sign
    ours, theirs = rotated.components_, ref.components_
    order = [int(np.argmax(np.abs(theirs @ row))) for row in ours]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs[order]), atol=5e-3)
    # the rotation changes the representative of W, not the model
    np.testing.assert_allclose(rotated.get_covariance(), plain.get_covariance(), rtol=1e-10)
    np.testing.assert_allclose(rotated.score_samples(X), plain.score_samples(X), rtol=1e-12)
    R = np.linalg.lstsq(plain.components_.T, rotated.components_.T, rcond=None)[0]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(rotated.transform(X), plain.transform(X) @ R, atol=1e-9)
    assert not np.allclose(rotated.components_, plain.components_, atol=1e-2)


def test_varimax_reproduces_r_psych() -> None:
    """Published values: R's psych::principal(rotate="varimax") of these loadings (as in
    scikit-learn's test of its rotation)."""
    loadings = np.array(
        [
            [0.89421016, -0.35854928],
            [-0.45081822, -0.89132754],
            [0.99500666, -0.02031465],
            [0.96822861, -0.06299656],
        ]
    )
    r_solution = np.array([[0.962, 0.052], [-0.141, 0.989], [0.949, -0.300], [0.937, -0.251]])
    np.testing.assert_allclose(np.abs(orthomax(loadings, 1.0)), np.abs(r_solution), atol=1e-3)


@pytest.mark.parametrize("missing", [0.0, 0.15])
def test_loglike_is_the_total_log_likelihood_after_each_iteration(missing: float) -> None:
    X = factor_data(300, 10, 2, seed=12, scales=(4.0, 3.0), noise="diagonal")
    X = with_missing(X, missing)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    fa = FactorAnalysis(2, tol=1e-8, random_state=0, monotonicity="raise")
    fa.fit(X, sample_weight=w)
    assert len(fa.loglike_) == fa.n_iter_
    assert fa.loglike_[-1] == pytest.approx(fa.score_samples(X) @ w, rel=1e-12)
    # the per-sample trace starts one iteration earlier
    np.testing.assert_allclose(fa.loglike_[:-1], fa.lower_bounds_[1:] * w.sum(), rtol=1e-12)
    assert np.all(np.diff(fa.loglike_) >= -1e-10 * abs(fa.loglike_[-1]))
    fa.set_params(max_iter=0).fit(X)
    assert fa.loglike_.shape == (0,)


@pytest.mark.parametrize("missing", [0.0, 0.1])
def test_svd_methods_and_noise_starts_reach_the_same_fit(missing: float) -> None:
    X = factor_data(400, 7, 2, seed=16, scales=(4.0, 3.0), noise="diagonal")
    X = with_missing(X, missing)
    kw = {"tol": 1e-12, "max_iter": 5000, "random_state": 0, "monotonicity": "raise"}
    fits = [
        FactorAnalysis(2, svd_method="lapack", **kw).fit(X),
        FactorAnalysis(2, svd_method="randomized", iterated_power=0, **kw).fit(X),
        FactorAnalysis(2, noise_variance_init=np.full(7, 1e-3), **kw).fit(X),
        FactorAnalysis(2, noise_variance_init=np.full(7, 1e3), **kw).fit(X),
    ]
    assert all(fit.converged_ for fit in fits)
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.get_covariance(), fits[0].get_covariance(), atol=1e-5)
        assert fit.score(X) == pytest.approx(fits[0].score(X), rel=1e-9)
    # the start is the maximum over W given the initial noise: the first log-likelihood
    # from the data's variances beats the one from a far-off noise
    assert fits[0].lower_bounds_[0] > fits[3].lower_bounds_[0]


def test_number_of_factors_from_none_to_zero() -> None:
    X = factor_data(400, 5, 2, seed=18, noise="diagonal")
    everything = FactorAnalysis(random_state=0).fit(X)
    assert everything.components_.shape == (5, 5)
    np.testing.assert_allclose(
        everything.get_covariance() @ everything.get_precision(), np.eye(5), atol=1e-9
    )
    # no factor: independent normal features with the sample mean and variance
    none = FactorAnalysis(0, random_state=0, monotonicity="raise").fit(X)
    assert none.components_.shape == (0, 5)
    np.testing.assert_allclose(none.noise_variance_, X.var(axis=0), rtol=1e-10)
    expected = norm(X.mean(axis=0), X.std(axis=0)).logpdf(X).sum(axis=1)
    np.testing.assert_allclose(none.score_samples(X), expected, rtol=1e-10)
    assert none.transform(X).shape == (400, 0)


@pytest.mark.parametrize("copy", [True, False])
def test_copy_never_changes_X(copy: bool) -> None:
    X = factor_data(200, 5, 2, seed=19)
    before = X.copy()
    fa = FactorAnalysis(2, copy=copy, random_state=0).fit(X)
    np.testing.assert_array_equal(X, before)
    ref = FactorAnalysis(2, random_state=0).fit(before)
    np.testing.assert_array_equal(fa.components_, ref.components_)


def test_ppca_score_is_pca_probabilistic_score() -> None:
    """scikit-learn's PCA scores rows under the PPCA model of its fit, with covariances
    divided by n - 1 where maximum likelihood divides by n: fitted to the centred data
    times sqrt((n - 1) / n), it is PPCA's maximum."""
    X = factor_data(1000, 7, 2, seed=20)
    n = len(X)
    Xc = X - X.mean(axis=0)
    ppca = PPCA(2, tol=1e-13, max_iter=5000, random_state=0, monotonicity="raise").fit(Xc)
    pca = PCA(2, svd_solver="full").fit(Xc * np.sqrt((n - 1) / n))
    np.testing.assert_allclose(ppca.score_samples(Xc), pca.score_samples(Xc), rtol=1e-8)
    assert ppca.score(Xc) == pytest.approx(pca.score(Xc), rel=1e-10)
    np.testing.assert_allclose(ppca.get_precision(), pca.get_precision(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_score_samples_is_the_marginal_density_of_the_observed_values(estimator: type) -> None:
    X = factor_data(300, 6, 2, seed=4, noise="diagonal")
    model = estimator(2, random_state=0).fit(with_missing(X, 0.2, seed=1))
    Xm = with_missing(X[:40], 0.3, seed=2)
    C = model.get_covariance()
    expected = []
    for row in Xm:
        o = ~np.isnan(row)
        expected.append(multivariate_normal(model.mean_[o], C[np.ix_(o, o)]).logpdf(row[o]))
    np.testing.assert_allclose(model.score_samples(Xm), expected, rtol=1e-10)
    complete = multivariate_normal(model.mean_, C).logpdf(X)
    np.testing.assert_allclose(model.score_samples(X), complete, rtol=1e-10)
    np.testing.assert_allclose(model.get_precision(), np.linalg.inv(C), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_transform_is_the_posterior_mean_given_the_observed_values(estimator: type) -> None:
    X = factor_data(300, 6, 2, seed=5, noise="diagonal")
    model = estimator(2, random_state=0).fit(X)
    W, psi = model.components_.T, np.broadcast_to(model.noise_variance_, (6,))
    Xm = with_missing(X[:30], 0.3, seed=3)
    expected = []
    for row in Xm:
        o = ~np.isnan(row)
        Wo = W[o] / psi[o][:, None]
        M = np.eye(2) + W[o].T @ Wo
        expected.append(np.linalg.solve(M, Wo.T @ (row[o] - model.mean_[o])))
    np.testing.assert_allclose(model.transform(Xm), expected, rtol=1e-10, atol=1e-12)
    Z = model.transform(X)
    np.testing.assert_allclose(model.inverse_transform(Z), Z @ model.components_ + model.mean_)


# -- invariants --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(10, 120),
    d=st.integers(2, 7),
    q=st.integers(1, 3),
    missing=st.sampled_from([0.0, 0.1, 0.4]),
    estimator=st.sampled_from(ESTIMATORS),
)
def test_log_likelihood_never_decreases(
    seed: int, n: int, d: int, q: int, missing: float, estimator: type
) -> None:
    """EM (here PX-EM) never lowers the log-likelihood, with or without missing values:
    monotonicity='raise' turns any decrease beyond round-off into an error."""
    q = min(q, d - 1)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, d) + rng.normal(size=(n, 1)) * 2
    X = with_missing(X, missing, seed=seed)
    model = estimator(q, tol=0, max_iter=30, random_state=seed, monotonicity="raise").fit(X)
    assert model.n_iter_ == 30
    assert np.all(np.isfinite(model.lower_bounds_))


@pytest.mark.parametrize("missing", [0.0, 0.2])
@pytest.mark.parametrize("q", [0, 5])
@pytest.mark.parametrize("svd_method", ["lapack", "randomized"])
def test_factor_analysis_with_no_or_all_factors_is_monotone(
    missing: float, q: int, svd_method: str
) -> None:
    X = with_missing(factor_data(150, 5, 2, seed=22, noise="diagonal"), missing)
    fa = FactorAnalysis(
        q, svd_method=svd_method, tol=0, max_iter=40, random_state=0, monotonicity="raise"
    ).fit(X)
    assert np.all(np.isfinite(fa.lower_bounds_)) and fa.components_.shape == (q, 5)
    assert np.all(np.diff(fa.loglike_) >= -1e-10 * abs(fa.loglike_[-1]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_trace_with_missing_values_is_monotone(estimator: type) -> None:
    X = with_missing(factor_data(500, 8, 2, seed=6, noise="diagonal"), 0.25)
    model = estimator(2, tol=1e-10, max_iter=500, random_state=0, monotonicity="raise").fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * abs(model.lower_bound_))


def test_row_order_does_not_matter() -> None:
    X = with_missing(factor_data(400, 6, 2, seed=7), 0.1)
    perm = np.random.default_rng(0).permutation(len(X))
    a = FactorAnalysis(2, tol=0, max_iter=20, random_state=0).fit(X)
    b = FactorAnalysis(2, tol=0, max_iter=20, random_state=0).fit(X[perm])
    for name in FITTED:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)


# -- equivalences ------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("missing", [0.0, 0.15])
def test_chunk_size_and_threads_do_not_change_the_fit(estimator: type, missing: float) -> None:
    X = with_missing(factor_data(1100, 6, 2, seed=8, noise="diagonal"), missing)
    fits = [
        estimator(2, tol=0, max_iter=10, random_state=0, chunk_size=c, n_threads=t).fit(X)
        for c, t in [(len(X), 1), (1, 2), (7, 2), (1000, 1), (None, 2), (7, 1)]
    ]
    for fit in fits[1:]:
        for name in [*FITTED, "lower_bounds_"]:
            np.testing.assert_allclose(
                getattr(fit, name), getattr(fits[0], name), rtol=1e-10, atol=1e-12
            )
    # the reduction runs in chunk order, so the thread count changes nothing at all
    for name in FITTED:
        np.testing.assert_array_equal(getattr(fits[2], name), getattr(fits[5], name))
    Xt = X[:50]
    for method in ("transform", "score_samples"):
        np.testing.assert_allclose(
            getattr(fits[1], method)(Xt), getattr(fits[0], method)(Xt), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("missing", [0.0, 0.15])
def test_integer_weights_equal_repeated_rows(estimator: type, missing: float) -> None:
    X = with_missing(factor_data(200, 5, 2, seed=9, noise="diagonal"), missing)
    w = np.random.default_rng(0).integers(0, 4, len(X))
    kw = dict(tol=0, max_iter=25, random_state=0, monotonicity="raise")
    weighted = estimator(2, **kw).fit(X, sample_weight=w)
    repeated = estimator(2, **kw).fit(np.repeat(X, w, axis=0))
    for name in [*FITTED, "lower_bounds_"]:
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(repeated, name), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("noise", ["isotropic", "diagonal"])
def test_statistics_path_equals_the_row_path_on_complete_data(noise: str) -> None:
    """The E-step on (count, sum x, sum x x^T) is the row E-step summed in closed form: the
    same EM from the same start, to round-off."""
    X = factor_data(700, 7, 3, seed=10, scales=(3.0, 2.0, 1.5), noise="diagonal")
    w = np.random.default_rng(1).uniform(0.0, 2.0, len(X))
    shift = X.mean(axis=0)
    rows = LatentFactor(noise_structure(noise), shift, 1e-8)
    stats = LatentFactorMoments(noise_structure(noise), shift, 1e-8)
    start = rows.initial_params(np.random.default_rng(2), np.zeros(7), X.var(axis=0), 3)
    kw = dict(tol=0.0, max_iter=40, monotonicity="raise")
    with InMemoryEngine(chunk_size=64) as engine:
        by_rows = fit_em(rows, engine, RowSource(X, w), start, **kw)
        scatter = engine.map_reduce(rows.moments, RowSource(X, w)).scatter_root()
    by_stats = fit_em(stats, ReducedEngine(), RowSource(scatter), start, **kw)
    np.testing.assert_allclose(by_rows.trace.objective, by_stats.trace.objective, rtol=1e-12)
    (W1, mu1, psi1), (W2, mu2, psi2) = by_rows.params, by_stats.params
    np.testing.assert_allclose(W1 @ W1.T, W2 @ W2.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(mu1, mu2, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(psi1, psi2, rtol=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_float32_input_fits_like_float64(estimator: type) -> None:
    X = factor_data(500, 6, 2, seed=11).astype(np.float32)
    a = estimator(2, random_state=0, tol=0, max_iter=20).fit(X)
    b = estimator(2, random_state=0, tol=0, max_iter=20).fit(X.astype(np.float64))
    for name in FITTED:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)


# -- missing values ----------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_parameters_approach_the_complete_data_fit_as_fewer_values_are_missing(
    estimator: type,
) -> None:
    X = factor_data(4000, 8, 2, seed=12, noise="diagonal")
    kw = dict(tol=1e-10, max_iter=5000, random_state=0, monotonicity="raise")
    complete = estimator(2, **kw).fit(X).get_covariance()
    distances = [
        np.abs(estimator(2, **kw).fit(with_missing(X, f)).get_covariance() - complete).max()
        for f in (0.3, 0.05, 0.005)
    ]
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.02 * np.abs(complete).max()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_transform_and_score_accept_missing_values(estimator: type) -> None:
    X = factor_data(300, 6, 2, seed=13)
    Xm = with_missing(X, 0.3)
    model = estimator(2, random_state=0).fit(Xm)
    assert model.transform(Xm).shape == (300, 2)
    assert np.isfinite(model.transform(Xm)).all()
    assert np.isfinite(model.score_samples(Xm)).all()
    # a value seen is information: the marginal density of fewer values is higher
    assert model.score(Xm) > model.score(X)


# -- sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sample_moments_recover_the_model_covariance(estimator: type) -> None:
    model = estimator(2, random_state=0).fit(factor_data(500, 5, 2, seed=14, noise="diagonal"))
    S = model.sample(200_000)
    assert S.shape == (200_000, 5)
    C = model.get_covariance()
    np.testing.assert_allclose(S.mean(axis=0), model.mean_, atol=0.03 * np.sqrt(C.max()))
    np.testing.assert_allclose(np.cov(S, rowvar=False), C, atol=0.02 * np.abs(C).max())


# -- the estimator surface -----------------------------------------------------------------


def test_bic_counts_the_free_parameters() -> None:
    X = factor_data(300, 6, 2, seed=15)
    n, d, q = 300, 6, 2
    ppca = PPCA(q, random_state=0).fit(X)
    fa = FactorAnalysis(q, random_state=0).fit(X)
    # W up to rotation, the mean, then sigma^2 or psi
    k_ppca = d * q - q * (q - 1) // 2 + d + 1
    k_fa = d * q - q * (q - 1) // 2 + d + d
    assert ppca.bic(X) == pytest.approx(-2 * ppca.score(X) * n + k_ppca * np.log(n))
    assert fa.bic(X) == pytest.approx(-2 * fa.score(X) * n + k_fa * np.log(n))
    assert fa.aic(X) == pytest.approx(-2 * fa.score(X) * n + 2 * k_fa)


def test_feature_names_out_and_trace() -> None:
    X = factor_data(200, 5, 2, seed=16)
    ppca = PPCA(2, random_state=0).fit(X)
    assert list(ppca.get_feature_names_out()) == ["ppca0", "ppca1"]
    assert ppca.trace_.objective.shape == (ppca.n_iter_,)
    assert ppca.lower_bound_ == ppca.lower_bounds_[-1]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_model_files_round_trip(estimator: type, tmp_path: pathlib.Path) -> None:
    X = with_missing(factor_data(200, 5, 2, seed=18), 0.1)
    model = estimator(2, random_state=0).fit(X)
    loaded = load_model(save_model(model, tmp_path / "model.npz"))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


def test_verbose_logs_the_path_and_the_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    X = factor_data(200, 5, 2, seed=19)
    PPCA(2, verbose=1, verbose_interval=1, random_state=0).fit(X)
    FactorAnalysis(2, verbose=1, verbose_interval=1, random_state=0).fit(with_missing(X, 0.1))
    err = capsys.readouterr().err
    assert "PPCA: EM over the sufficient statistics, 200 rows, 5 features, q=2" in err
    assert "FactorAnalysis: EM over rows with missing values, 200 rows" in err
    assert "Iteration 1\t objective" in err


# -- errors --------------------------------------------------------------------------------

X_SMALL = factor_data(50, 4, 2, seed=17)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tol": -1.0}, r"tol must be a finite number >= 0.0, got -1.0"),
        ({"max_iter": -1}, r"max_iter must be an integer >= 0, got -1"),
        ({"monotonicity": "loud"}, r"monotonicity must be one of 'raise', 'warn', 'off'"),
        ({"random_state": "seed"}, r"random_state must be None, an int"),
        ({"verbose_interval": 0}, r"verbose_interval must be an integer >= 1"),
    ],
)
def test_bad_parameters(estimator: type, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        estimator(**kwargs).fit(X_SMALL)


@pytest.mark.parametrize(
    ("estimator", "kwargs", "match"),
    [
        (PPCA, {"n_components": 4}, r"n_components=4 must be less than n_features=4.*Decrease"),
        (PPCA, {"n_components": 0}, r"n_components must be an integer >= 1, got 0"),
        (PPCA, {"n_components": 1.5}, r"n_components must be an integer >= 1, got 1.5"),
        (PPCA, {"n_components": None}, r"n_components must be an integer >= 1, got None"),
        # scikit-learn's FactorAnalysis takes 0 <= n_components <= n_features
        (FactorAnalysis, {"n_components": 5}, r"n_components=5 must be at most n_features=4"),
        (FactorAnalysis, {"n_components": -1}, r"n_components must be an integer >= 0, got -1"),
        (FactorAnalysis, {"n_components": 1.5}, r"n_components must be an integer >= 0, got 1.5"),
        (FactorAnalysis, {"svd_method": "arpack"}, r"svd_method must be one of 'lapack', 'rand"),
        (FactorAnalysis, {"rotation": "promax"}, r"rotation must be one of 'varimax', 'quart"),
        (FactorAnalysis, {"iterated_power": -1}, r"iterated_power must be an integer >= 0"),
        (FactorAnalysis, {"copy": "yes"}, r"copy must be True or False, got 'yes'"),
        (FactorAnalysis, {"verbose": -1}, r"verbose must be an integer >= 0, got -1"),
        (
            FactorAnalysis,
            {"noise_variance_init": np.ones(3)},
            r"noise_variance_init must be an array of 4 numbers.*got shape \(3,\)",
        ),
        (
            FactorAnalysis,
            {"noise_variance_init": [1.0, 0.0, 1.0, 1.0]},
            r"noise_variance_init must hold finite positive variances",
        ),
    ],
)
def test_bad_number_of_factors_and_options(estimator: type, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        estimator(**kwargs).fit(X_SMALL)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bad_data(estimator: type) -> None:
    empty_row = X_SMALL.copy()
    empty_row[[3, 7]] = np.nan
    with pytest.raises(InputError, match=r"2 row\(s\) with every value missing \(first at row 3"):
        estimator(2).fit(empty_row)
    empty_column = X_SMALL.copy()
    empty_column[:, 1] = np.nan
    with pytest.raises(InputError, match=r"Column 1 of X has no observed value.*drop that column"):
        estimator(1).fit(empty_column)
    only_zero_weight = X_SMALL.copy()
    only_zero_weight[1:, 2] = np.nan
    with pytest.raises(InputError, match=r"Column 2 of X has no observed value"):
        estimator(1).fit(only_zero_weight, sample_weight=np.r_[0.0, np.ones(49)])
    infinite = with_missing(X_SMALL, 0.1)
    infinite[5, 3] = np.inf
    with pytest.raises(InputError, match=r"contains infinity \(first at row 5, column 3\)"):
        estimator(2).fit(infinite)
    with pytest.raises(InputError, match=r"contains infinity"):
        estimator(2).fit(np.where(np.isnan(infinite), 0.0, infinite))
    with pytest.raises(InputError, match=r"X has 1 sample; .*at least 2 samples"):
        estimator(1).fit(X_SMALL[:1])
    if estimator is PPCA:
        with pytest.raises(InputError, match=r"n_components=1 must be less than n_features=1"):
            estimator(1).fit(X_SMALL[:, :1])
    else:
        with pytest.raises(InputError, match=r"n_components=2 must be at most n_features=1"):
            estimator(2).fit(X_SMALL[:, :1])


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_errors_of_the_fitted_model(estimator: type) -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        estimator(2).transform(X_SMALL)
    model = estimator(2, random_state=0).fit(X_SMALL)
    name = estimator.__name__
    with pytest.raises(ValueError, match=f"X has 3 features, but {name} is expecting 4"):
        model.transform(X_SMALL[:, :3])
    with pytest.raises(ValueError, match=f"X has 5 features, but {name} is expecting 4"):
        model.score_samples(np.ones((2, 5)))
    row = X_SMALL[:3].copy()
    row[1] = np.nan
    with pytest.raises(InputError, match=r"1 row\(s\) with every value missing \(first at row 1"):
        model.transform(row)
    with pytest.raises(InputError, match=rf"X has 3 columns, but {name} has n_components=2"):
        model.inverse_transform(np.ones((2, 3)))
    with pytest.raises(InputError, match=r"n_samples must be an integer >= 1, got 0"):
        model.sample(0)
