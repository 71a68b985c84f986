"""Mixtures of PPCA and of factor analyzers: recovery of a known structure, invariants,
equivalences, reference densities, sampling and errors. Fits that check the EM trace use
monotonicity="raise", so any decrease of the log-likelihood fails the test."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

from emkit import (
    PPCA,
    FactorAnalysis,
    GaussianMixture,
    InputError,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    load_model,
    save_model,
)
from emkit.engines import InMemoryEngine, RowSource
from emkit.inference import fit_em
from emkit.models import FactorMixture, FactorMixtureParams, noise_structure
from emkit.models.latent_factor import ppca_maximum_likelihood

MIXTURES = [MixtureOfPPCA, MixtureOfFactorAnalyzers]
FITTED = ["weights_", "means_", "components_", "noise_variance_"]


def mixture_data(
    n: int = 1500, d: int = 20, k: int = 3, q: int = 2, seed: int = 0, diagonal: bool = False
) -> tuple[np.ndarray, np.ndarray, list[dict[str, np.ndarray]]]:
    """Rows from a mixture of k low-rank-plus-noise Gaussians, far apart in d dimensions;
    returns X, the labels and each cluster's true (mean, W, noise)."""
    rng = np.random.default_rng(seed)
    truth, parts, labels = [], [], []
    for j, m in enumerate(rng.multinomial(n, np.full(k, 1.0 / k))):
        W = rng.normal(size=(d, q)) * np.linspace(3.0, 2.0, q)
        noise = rng.uniform(0.1, 0.4, d) if diagonal else np.full(d, 0.2 + 0.1 * j)
        mean = rng.normal(size=d) * 6.0
        parts.append(rng.normal(size=(m, q)) @ W.T + rng.normal(size=(m, d)) * np.sqrt(noise))
        parts[-1] += mean
        labels.append(np.full(m, j))
        truth.append({"mean": mean, "W": W, "noise": noise})
    perm = rng.permutation(n)
    return np.vstack(parts)[perm], np.concatenate(labels)[perm], truth


def _principal_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Angles (radians) between the column spaces of A and B."""
    Qa, _ = np.linalg.qr(A)
    Qb, _ = np.linalg.qr(B)
    return np.arccos(np.clip(np.linalg.svd(Qa.T @ Qb, compute_uv=False), -1.0, 1.0))


# -- recovery of a known structure --------------------------------------------------------


@pytest.mark.parametrize("estimator", MIXTURES)
def test_recovers_the_clusters_subspaces_and_noise(estimator: type) -> None:
    diagonal = estimator is MixtureOfFactorAnalyzers
    X, labels, truth = mixture_data(seed=1, diagonal=diagonal)
    model = estimator(3, n_factors=2, tol=1e-8, max_iter=500, random_state=0)
    model.set_params(monotonicity="raise").fit(X)
    assert model.converged_
    assert adjusted_rand_score(labels, model.predict(X)) == 1.0
    single = PPCA if estimator is MixtureOfPPCA else FactorAnalysis
    for j, cluster in enumerate(truth):
        k = int(np.argmin(np.linalg.norm(model.means_ - cluster["mean"], axis=1)))
        W = model.components_[k].T
        # the true structure, up to sampling error
        assert _principal_angles(W, cluster["W"]).max() < 0.05
        fitted_noise = np.broadcast_to(model.noise_variance_[k], cluster["noise"].shape)
        relative = np.abs(fitted_noise / cluster["noise"] - 1.0)
        assert np.median(relative) < 0.1 and relative.max() < 0.5
        # and, the clusters being separated, the single model fitted to the cluster's rows
        rows = X[labels == j]
        alone = single(2, tol=1e-12, max_iter=20_000, random_state=0).fit(rows)
        np.testing.assert_allclose(model.means_[k], rows.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            model.covariances_[k], alone.get_covariance(), rtol=1e-3, atol=1e-3
        )


def test_far_fewer_parameters_than_full_covariances() -> None:
    X, _, _ = mixture_data(600, 20, 3, 2, seed=2)
    mppca = MixtureOfPPCA(3, n_factors=2, random_state=0).fit(X)
    mfa = MixtureOfFactorAnalyzers(3, n_factors=2, random_state=0).fit(X)
    full = GaussianMixture(3, random_state=0).fit(X)
    k, d, q = 3, 20, 2
    per_cluster = d * q - q * (q - 1) // 2 + d
    assert mppca._n_parameters() == k - 1 + k * (per_cluster + 1)
    assert mfa._n_parameters() == k - 1 + k * (per_cluster + d)
    assert 2 * mfa._n_parameters() < full._n_parameters()
    # the low-rank models describe this data better for their size
    assert mppca.bic(X) < full.bic(X)


# -- reference values ---------------------------------------------------------------------


@pytest.mark.parametrize("estimator", MIXTURES)
def test_score_samples_and_predict_proba_match_scipy(estimator: type) -> None:
    X, _, _ = mixture_data(400, 6, 2, 2, seed=3)
    model = estimator(2, n_factors=2, random_state=0).fit(X)
    log_joint = np.column_stack(
        [
            np.log(model.weights_[k])
            + multivariate_normal(model.means_[k], model.covariances_[k]).logpdf(X)
            for k in range(2)
        ]
    )
    np.testing.assert_allclose(model.score_samples(X), logsumexp(log_joint, axis=1), rtol=1e-10)
    proba = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), proba, rtol=1e-8, atol=1e-12)
    W = np.swapaxes(model.components_, 1, 2)
    noise = np.broadcast_to(np.asarray(model.noise_variance_).reshape(2, -1), (2, 6))
    expected = W @ np.swapaxes(W, 1, 2) + np.stack([np.diag(v) for v in noise])
    np.testing.assert_allclose(model.covariances_, expected, rtol=1e-12)


def test_one_cluster_mixture_of_ppca_is_the_closed_form_ppca() -> None:
    """The MPPCA M-step is the closed-form maximum: with one cluster, EM stops at PPCA's
    maximum after one iteration."""
    X, _, _ = mixture_data(800, 8, 1, 2, seed=4)
    mixture = MixtureOfPPCA(1, n_factors=2, tol=1e-12, random_state=0, monotonicity="raise")
    mixture.fit(X)
    ppca = PPCA(2, tol=1e-13, max_iter=10_000, random_state=0, monotonicity="raise").fit(X)
    assert mixture.score(X) == pytest.approx(ppca.score(X), rel=1e-10)
    np.testing.assert_allclose(mixture.noise_variance_[0], ppca.noise_variance_, rtol=1e-8)
    assert mixture.n_iter_ <= 3


def test_one_cluster_mixture_of_factor_analyzers_is_factor_analysis() -> None:
    X, _, _ = mixture_data(800, 8, 1, 2, seed=5, diagonal=True)
    kw = dict(tol=1e-12, max_iter=20_000, random_state=0, monotonicity="raise")
    mixture = MixtureOfFactorAnalyzers(1, n_factors=2, **kw).fit(X)
    fa = FactorAnalysis(2, **kw).fit(X)
    assert mixture.score(X) == pytest.approx(fa.score(X), rel=1e-9)
    np.testing.assert_allclose(mixture.covariances_[0], fa.get_covariance(), atol=1e-4)


# -- invariants ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 150),
    d=st.integers(2, 6),
    q=st.integers(1, 3),
    k=st.integers(1, 4),
    reg_covar=st.sampled_from([1e-6, 1e-2]),
    init_params=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
    estimator=st.sampled_from(MIXTURES),
)
def test_log_likelihood_never_decreases(
    seed: int,
    n: int,
    d: int,
    q: int,
    k: int,
    reg_covar: float,
    init_params: str,
    estimator: type,
) -> None:
    """Exact (MPPCA) and generalized (MFA) EM never lower the log-likelihood:
    monotonicity='raise' turns any decrease beyond round-off into an error."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.integers(0, 3, (n, 1)) * 3
    model = estimator(
        k,
        n_factors=min(q, d - 1),
        reg_covar=reg_covar,
        tol=0,
        max_iter=30,
        init_params=init_params,
        random_state=seed,
        monotonicity="raise",
    ).fit(X)
    assert np.all(np.isfinite(model.lower_bounds_))


@pytest.mark.parametrize("estimator", MIXTURES)
def test_fit_predict_and_responsibilities(estimator: type) -> None:
    X, _, _ = mixture_data(500, 6, 3, 2, seed=6)
    model = estimator(3, n_factors=2, random_state=0)
    labels = model.fit_predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)


# -- equivalences -------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", MIXTURES)
def test_chunk_size_and_threads_do_not_change_the_fit(estimator: type) -> None:
    X, _, _ = mixture_data(1100, 6, 3, 2, seed=7)
    fits = [
        estimator(3, n_factors=2, tol=0, max_iter=10, random_state=0, chunk_size=c, n_threads=t)
        for c, t in [(len(X), 1), (1, 2), (7, 2), (1000, 1), (None, 2), (7, 1)]
    ]
    for fit in fits:
        fit.fit(X)
    for fit in fits[1:]:
        for name in [*FITTED, "lower_bounds_"]:
            np.testing.assert_allclose(
                getattr(fit, name), getattr(fits[0], name), rtol=1e-10, atol=1e-12
            )
    for name in FITTED:
        np.testing.assert_array_equal(getattr(fits[2], name), getattr(fits[5], name))


@pytest.mark.parametrize("estimator", MIXTURES)
def test_integer_weights_equal_repeated_rows(estimator: type) -> None:
    X, _, _ = mixture_data(200, 5, 2, 1, seed=9)
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    noise_type = "isotropic" if estimator is MixtureOfPPCA else "diagonal"
    model = FactorMixture(noise_structure(noise_type), X.mean(axis=0), 1e-6)
    rng = np.random.default_rng(1)
    means = X[rng.choice(len(X), 2, replace=False)] - X.mean(axis=0)
    S = np.stack([np.cov(X, rowvar=False)] * 2)
    W, noise = ppca_maximum_likelihood(S, 1, 1e-6)
    start = FactorMixtureParams(np.array([0.5, 0.5]), W, means, noise)
    kw = dict(tol=0.0, max_iter=25, monotonicity="raise")
    with InMemoryEngine() as engine:
        weighted = fit_em(model, engine, RowSource(X, w), start, **kw)
        repeated = fit_em(
            model, engine, RowSource(np.repeat(X, w.astype(int), axis=0)), start, **kw
        )
    np.testing.assert_allclose(weighted.trace.objective, repeated.trace.objective, rtol=1e-10)
    for a, b in zip(weighted.params, repeated.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


# -- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", MIXTURES)
def test_sample_recovers_the_fitted_parameters(estimator: type) -> None:
    X, _, _ = mixture_data(600, 4, 2, 1, seed=10)
    model = estimator(2, n_factors=1, random_state=0).fit(X)
    S, y = model.sample(100_000)
    assert S.shape == (100_000, 4) and np.all(np.diff(y) >= 0)
    np.testing.assert_allclose(np.bincount(y) / len(y), model.weights_, atol=0.01)
    for k in range(2):
        C = model.covariances_[k]
        np.testing.assert_allclose(S[y == k].mean(axis=0), model.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(S[y == k], rowvar=False), C, atol=0.03 * np.abs(C).max())


@pytest.mark.parametrize("estimator", MIXTURES)
def test_model_files_round_trip(estimator: type, tmp_path: pathlib.Path) -> None:
    X, _, _ = mixture_data(300, 5, 2, 1, seed=12)
    model = estimator(2, n_factors=1, random_state=0).fit(X)
    loaded = load_model(save_model(model, tmp_path / "model.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# -- errors -------------------------------------------------------------------------------

X_SMALL, _, _ = mixture_data(60, 4, 2, 1, seed=11)


@pytest.mark.parametrize("estimator", MIXTURES)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_factors": 4}, r"n_factors=4 must be less than n_features=4.*Decrease n_factors"),
        ({"n_factors": 0}, r"n_factors must be an integer >= 1, got 0"),
        ({"n_components": 0}, r"n_components must be an integer >= 1, got 0"),
        ({"reg_covar": 0.0}, r"reg_covar must be > 0, got 0.0: it is the floor"),
        ({"reg_covar": -1.0}, r"reg_covar must be a finite number >= 0.0, got -1.0"),
        ({"n_init": 0}, r"n_init must be an integer >= 1, got 0"),
        ({"init_params": "best"}, r"init_params must be one of 'kmeans', 'k-means\+\+'"),
        ({"monotonicity": "loud"}, r"monotonicity must be one of 'raise', 'warn', 'off'"),
        ({"tol": float("nan")}, r"tol must be a finite number >= 0.0, got nan"),
    ],
)
def test_bad_parameters(estimator: type, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        estimator(**{"n_components": 2, **kwargs}).fit(X_SMALL)


@pytest.mark.parametrize("estimator", MIXTURES)
def test_bad_data_and_fitted_model_errors(estimator: type) -> None:
    with pytest.raises(InputError, match=r"X has 3 samples but n_components=4.*Decrease"):
        estimator(4).fit(X_SMALL[:3])
    with pytest.raises(InputError, match=r"X has 1 sample; .*at least 2 samples"):
        estimator(1).fit(X_SMALL[:1])
    with pytest.raises(InputError, match=r"n_factors=1 must be less than n_features=1"):
        estimator(1).fit(X_SMALL[:, :1])
    missing = X_SMALL.copy()
    missing[2, 1] = np.nan
    with pytest.raises(InputError, match=r"contains NaN \(first at row 2, column 1\)"):
        estimator(2).fit(missing)
    model = estimator(2, random_state=0).fit(X_SMALL)
    name = estimator.__name__
    with pytest.raises(ValueError, match=f"X has 3 features, but {name} is expecting 4"):
        model.predict(X_SMALL[:, :3])
    with pytest.raises(InputError, match=r"n_samples must be an integer >= 1, got 0"):
        model.sample(0)


# -- extreme magnitudes (issue 16, class 1) -------------------------------------------------

FACTOR_MODELS = [PPCA, FactorAnalysis, MixtureOfPPCA, MixtureOfFactorAnalyzers]


def _small_fit(estimator: type, X: np.ndarray, reg_covar: float = 1e-6) -> object:
    if estimator in MIXTURES:
        return estimator(2, n_factors=1, reg_covar=reg_covar, random_state=0).fit(X)
    return estimator(2, random_state=0).fit(X)


def _extreme_data() -> np.ndarray:
    X, _, _ = mixture_data(200, 5, 2, 1, seed=21)
    return X


@pytest.mark.parametrize("estimator", FACTOR_MODELS)
@pytest.mark.parametrize("exponent", [-480, 480])
def test_extreme_magnitudes_fit_as_the_rescaled_data(estimator: type, exponent: int) -> None:
    """Data times 2^480 (about 1e144; its squares overflow) or 2^-480: the fit is that of
    the data, scaled (reg_covar scaled with it), and so are its predictions."""
    X = _extreme_data()
    c = 2.0**exponent
    ref = _small_fit(estimator, X)
    fit = _small_fit(estimator, X * c, reg_covar=1e-6 * c * c)
    np.testing.assert_allclose(
        fit.means_ if hasattr(fit, "means_") else fit.mean_,
        (ref.means_ if hasattr(ref, "means_") else ref.mean_) * c,
        rtol=1e-9,
        atol=1e-9 * c,
    )
    np.testing.assert_allclose(np.abs(fit.components_), np.abs(ref.components_) * c, rtol=1e-7)
    np.testing.assert_allclose(
        fit.noise_variance_, np.asarray(ref.noise_variance_) * c * c, rtol=1e-9
    )
    d = X.shape[1]
    expected = ref.score_samples(X) - d * exponent * np.log(2.0)
    np.testing.assert_allclose(fit.score_samples(X * c), expected, rtol=1e-10)
    assert np.all(np.isfinite(fit.lower_bounds_))
    if estimator in MIXTURES:
        np.testing.assert_allclose(fit.predict_proba(X * c), ref.predict_proba(X), atol=1e-9)
    else:
        np.testing.assert_allclose(
            np.abs(fit.transform(X * c)), np.abs(ref.transform(X)), rtol=1e-7, atol=1e-9
        )


@pytest.mark.parametrize("estimator", FACTOR_MODELS)
def test_magnitudes_beyond_float64_raise_a_clear_error(estimator: type) -> None:
    """At 1e200 the fitted noise variances (about 1e400) are not float64 numbers; at
    1e-200 they underflow, or reg_covar dwarfs the data: the error says so and what to do."""
    X = _extreme_data()
    with pytest.raises(InputError, match=r"magnitude up to about .*overflow float64\. Divide X"):
        _small_fit(estimator, X * 1e200)
    if estimator in MIXTURES:
        match = r"magnitude up to about .*too small next to reg_covar=1e-06.*Multiply X"
    else:
        match = r"magnitude up to about .*underflow float64\. Multiply X"
    with pytest.raises(InputError, match=match):
        _small_fit(estimator, X * 1e-200)


@pytest.mark.parametrize("estimator", FACTOR_MODELS)
def test_outlying_rows_keep_exact_finite_predictions(estimator: type) -> None:
    """Rows mean + t v with t up to 1e155: the log-density is finite wherever its true
    value (quadratic in t) is a float64 number, -inf beyond; the posterior of the factors
    (linear in t) and the responsibilities (the limit as t grows) stay exact."""
    X = _extreme_data()
    fit = _small_fit(estimator, X)
    v = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    centre = X.mean(axis=0)
    t = np.array([1.0, 1e100, 1e150, 1e155])
    rows = centre + t[:, None] * v
    scores = fit.score_samples(rows)
    assert np.isneginf(scores[3])
    # log p(centre + t v) = log p(centre) - t^2 v^T P v / 2 + t (linear terms), exactly
    # quadratic in t for one Gaussian; the leading term dominates at t = 1e100 and 1e150
    np.testing.assert_allclose(scores[2] / scores[1], 1e100, rtol=1e-9)
    assert np.all(np.isfinite(scores[:3]))
    if estimator in MIXTURES:
        proba = fit.predict_proba(rows)
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_array_equal(proba[3], proba[1])  # the limit, one-hot
        np.testing.assert_array_equal(fit.predict(rows)[1:], proba[1:].argmax(axis=1))
    else:
        P = fit.get_precision()
        log_centre = float(fit.score_samples(centre[None])[0])
        np.testing.assert_allclose(scores[1], log_centre - 0.5e200 * (v @ P @ v), rtol=1e-12)
        Z = fit.transform(rows)
        Zc = fit.transform(centre[None])[0]
        # E[z | x] is affine in x: Zc + t (Z(centre + v) - Zc)
        np.testing.assert_allclose(Z[1:], Zc + t[1:, None] * (Z[0] - Zc), rtol=1e-9)
        # a missing value does not change that
        missing = rows.copy()
        missing[:, 1] = np.nan
        assert np.all(np.isfinite(fit.transform(missing)))
        assert np.isneginf(fit.score_samples(missing)[3])
        assert np.all(np.isfinite(fit.score_samples(missing)[:3]))
