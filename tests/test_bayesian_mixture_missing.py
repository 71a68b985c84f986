"""BayesianGaussianMixture on rows with missing values (NaN): the structured variational
E-step q(z) q(x_m | z) of emkit.models.variational_gaussian, checked by brute force
(Monte-Carlo draws of the Normal-Wishart and quadrature over the missing value), by the
ELBO's monotonicity, and against exact EM's GaussianMixture as the prior fades.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions
from conftest import blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from emkit import BayesianGaussianMixture, GaussianMixture, InputError
from emkit.families.gaussian import GaussianFamily, covariance_structure
from emkit.families.normal_wishart import NormalWishart
from emkit.io import open_table
from emkit.models.variational_gaussian import (
    VariationalGaussianMixture,
    VariationalParams,
    conditional_entropy,
)

PRIORS = ["dirichlet_process", "dirichlet_distribution"]
TYPES = ["full", "tied", "diag", "spherical"]


def _with_nan(X: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``X`` with about ``share`` of its values missing (no row wholly missing)."""
    out = X.copy()
    out[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return out[~np.isnan(out).all(axis=1)]


X = _with_nan(blobs(300, 3, 3, seed=5, spread=2.0), 0.2, seed=0)


def _model(
    covariance_type: str, X: np.ndarray, K: int, missing: bool
) -> tuple[VariationalGaussianMixture, VariationalParams]:
    """A variational mixture bound to ``X`` and posteriors fitted on its complete rows."""
    complete = X[~np.isnan(X).any(axis=1)]
    bgm = BayesianGaussianMixture(
        n_components=K, covariance_type=covariance_type, random_state=0, max_iter=5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        bgm.fit(complete)
    model, params = bgm._fitted_model(complete)
    return VariationalGaussianMixture(
        model.family,
        model.prior,
        model.weight_prior_type,
        model.weight_concentration,
        K,
        missing=missing,
    ), params


@pytest.mark.parametrize("covariance_type", TYPES)
def test_complete_rows_take_todays_path_bit_for_bit(covariance_type: str) -> None:
    """With no NaN the E-step is the complete one; with NaN its complete rows are."""
    plain, params = _model(covariance_type, X, 3, missing=False)
    either = VariationalGaussianMixture(
        plain.family,
        plain.prior,
        plain.weight_prior_type,
        plain.weight_concentration,
        3,
        missing=True,
    )
    complete = X[~np.isnan(X).any(axis=1)]
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(complete))
    for weights in (None, w):
        a = plain.expectation(params)(complete, weights)
        b = either.expectation(params)(complete, weights)
        for name in ("nk", "sum_t", "shared"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.loglik == b.loglik and a.weight == b.weight
    # the rows with NaN add their own statistics to those of the complete rows
    has_nan = np.isnan(X).any(axis=1)
    whole = either.expectation(params)(X, None)
    parts = plain.expectation(params)(X[~has_nan], None) + either.expectation(params)(
        X[has_nan], None
    )
    np.testing.assert_allclose(whole.sum_t, parts.sum_t, rtol=1e-12)
    assert whole.loglik == pytest.approx(parts.loglik, rel=1e-12)


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_elbo_never_decreases_with_missing_values(
    prior_type: str, covariance_type: str
) -> None:
    """20% of the values missing, random starts: the driver raises on any decrease (the
    entropy of q(x_m | z) left out, diag and spherical fits here drop by nats)."""
    for seed in range(2):
        bgm = BayesianGaussianMixture(
            n_components=5,
            covariance_type=covariance_type,
            weight_concentration_prior_type=prior_type,
            init_params="random",
            random_state=seed,
            tol=0.0,
            max_iter=40,
            monotonicity="raise",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            bgm.fit(X)
        steps = np.diff(bgm.lower_bounds_)
        assert (steps >= -1e-9 * np.abs(bgm.lower_bounds_[1:])).all()
        assert steps[0] > 0
        proba = bgm.predict_proba(X)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
        assert np.isfinite(bgm.score_samples(X)).all()
        np.testing.assert_array_equal(bgm.predict(X), proba.argmax(axis=1))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(TYPES),
    prior_type=st.sampled_from(PRIORS),
    share=st.floats(0.05, 0.6),
    weighted=st.booleans(),
)
def test_the_elbo_never_decreases_with_missing_values_property(
    seed: int,
    n_components: int,
    covariance_type: str,
    prior_type: str,
    share: float,
    weighted: bool,
) -> None:
    data = _with_nan(blobs(60, 3, 3, seed=seed, spread=2.0), share, seed)
    w = np.random.default_rng(seed).uniform(0.5, 3.0, len(data)) if weighted else None
    bgm = BayesianGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        init_params="random",
        random_state=seed,
        tol=0.0,
        max_iter=20,
        monotonicity="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        bgm.fit(data, sample_weight=w)
    assert np.isfinite(bgm.lower_bounds_).all()
    np.testing.assert_allclose(bgm.predict_proba(data).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_integer_weights_are_repeated_rows_with_missing_values(covariance_type: str) -> None:
    counts = np.random.default_rng(2).integers(0, 3, len(X))
    kwargs = dict(
        n_components=3,
        covariance_type=covariance_type,
        random_state=0,
        init_params="random_from_data",
        max_iter=0,
    )
    start = BayesianGaussianMixture(**kwargs).fit(np.repeat(X, counts, axis=0))
    fits = []
    for rows, w in ((np.repeat(X, counts, axis=0), None), (X, counts)):
        bgm = BayesianGaussianMixture(**kwargs).fit(rows, sample_weight=w)
        for name in ("weight_concentration_", "mean_precision_", "means_", "covariances_"):
            setattr(bgm, name, getattr(start, name))
        bgm.degrees_of_freedom_ = start.degrees_of_freedom_
        bgm.set_params(warm_start=True, max_iter=20, tol=0.0, monotonicity="raise")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            fits.append(bgm.fit(rows, sample_weight=w))
    np.testing.assert_allclose(fits[1].lower_bounds_, fits[0].lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(fits[1].means_, fits[0].means_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_a_weak_prior_and_many_rows_give_exact_ems_fit(covariance_type: str) -> None:
    """As N grows and the prior fades, E[Lambda]^-1 and m approach exact EM's maximum
    likelihood covariances and means on the same incomplete data (the gap shrinks as
    1/N: about 1e-2 here at N = 2000, 1e-3 at 16000)."""
    data = _with_nan(blobs(2000, 3, 3, seed=5, spread=4.0), 0.2, seed=0)
    exact = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-8)
    exact.fit(data)
    weak = {"full": 1e-4 * np.eye(3), "tied": 1e-4 * np.eye(3), "diag": 1e-4 * np.ones(3)}
    bgm = BayesianGaussianMixture(
        n_components=3,
        covariance_type=covariance_type,
        random_state=0,
        tol=1e-8,
        max_iter=500,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=1.0,
        mean_precision_prior=1e-6,
        degrees_of_freedom_prior=2.001,
        covariance_prior=weak.get(covariance_type, 1e-4),
    ).fit(data)
    ours, theirs = np.argsort(bgm.means_[:, 0]), np.argsort(exact.means_[:, 0])
    np.testing.assert_allclose(bgm.means_[ours], exact.means_[theirs], atol=1e-2)
    np.testing.assert_allclose(bgm.weights_[ours], exact.weights_[theirs], atol=1e-3)
    if covariance_type == "tied":
        np.testing.assert_allclose(bgm.covariances_, exact.covariances_, atol=3e-2)
    else:
        scale = np.abs(exact.covariances_).max()
        np.testing.assert_allclose(
            bgm.covariances_[ours], exact.covariances_[theirs], atol=1e-2 * scale
        )


def _posterior(seed: int) -> NormalWishart:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, 2))
    return NormalWishart(
        "full",
        rng.normal(size=(1, 2)),
        np.array([rng.uniform(0.5, 3.0)]),
        np.array([2.0 + rng.uniform(1.0, 4.0)]),
        (A @ A.T + np.eye(2))[None],
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_missing_values_row_term_is_the_integral_of_the_expected_log_density(
    seed: int,
) -> None:
    """D = 2, x_2 missing: log rho = E[log pi] + log int exp(E_q(theta)[log N(x | mu,
    Lambda^-1)]) dx_2, by Monte-Carlo draws of (mu, Lambda) and quadrature over x_2; and
    it is below the expected marginal E_q(theta)[log N(x_1 | mu_1, Sigma_11)], whose
    closed form (the observed block's Normal-Wishart: nu - 1 degrees of freedom, scale
    (W^-1)_11) the draws check too."""
    nw = _posterior(seed)
    family = GaussianFamily(covariance_structure("full"), np.zeros(2), 1e-6, 10.0)
    model = VariationalGaussianMixture(family, nw, "dirichlet_distribution", 1.0, 1, missing=True)
    # one component: E[log pi] = 0
    params = VariationalParams(np.array([3.0]), nw)
    x1 = 0.7
    ours = model.weighted_log_prob(params)(np.array([[x1, np.nan]]))[0, 0]

    rng = np.random.default_rng(10 + seed)
    n = 200_000
    lam = stats.wishart(df=nw.dof[0], scale=np.linalg.inv(nw.scale[0])).rvs(n, random_state=rng)
    cov = np.linalg.inv(lam * nw.shrinkage[0])
    mu = nw.mean[0] + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.standard_normal((n, 2)))
    log_det = np.linalg.slogdet(lam)[1]

    def draws(x2: float) -> np.ndarray:
        delta = np.array([x1, x2]) - mu
        return (
            -np.log(2 * np.pi) + 0.5 * log_det - 0.5 * np.einsum("ni,nij,nj->n", delta, lam, delta)
        )

    # exp(E[log N]) is a Gaussian in x_2 times a constant: integrate it around its mode
    centre = nw.mean[0, 1]
    width = 12.0 * np.sqrt(nw.scale[0, 1, 1] / nw.dof[0])
    value, _ = integrate.quad(
        lambda x2: np.exp(draws(x2).mean()), centre - width, centre + width, epsabs=0
    )
    brute = np.log(value)
    at_mode = draws(centre)
    # each E[log N(x)] carries the Monte-Carlo error of a mean of n draws
    assert ours == pytest.approx(brute, abs=6 * at_mode.std() / np.sqrt(n))

    # the expected marginal of the observed block, E log N(x_1 | mu_1, Sigma_11)
    sigma11 = np.linalg.inv(lam)[:, 0, 0]
    marginal = stats.norm(mu[:, 0], np.sqrt(sigma11)).logpdf(x1)
    nu_o, psi_oo = nw.dof[0] - 1.0, nw.scale[0, 0, 0]
    closed = (
        -0.5 * (nu_o * (x1 - nw.mean[0, 0]) ** 2 / psi_oo + 1.0 / nw.shrinkage[0])
        + 0.5 * (special.digamma(0.5 * nu_o) + np.log(2.0) - np.log(psi_oo))
        - 0.5 * np.log(2 * np.pi)
    )
    assert closed == pytest.approx(marginal.mean(), abs=6 * marginal.std() / np.sqrt(n))
    assert ours < closed


@pytest.mark.parametrize("covariance_type", TYPES)
def test_conditional_entropy_is_each_rows_gaussian_entropy(covariance_type: str) -> None:
    rng = np.random.default_rng(3)
    d, K = 4, 3
    structure = covariance_structure(covariance_type)
    A = rng.normal(size=(K, d, d))
    cov = {
        "full": A @ A.transpose(0, 2, 1) + np.eye(d),
        "tied": A[0] @ A[0].T + np.eye(d),
        "diag": rng.uniform(0.5, 2.0, (K, d)),
        "spherical": rng.uniform(0.5, 2.0, K),
    }[covariance_type]
    from emkit.families.normal_wishart import precision_cholesky

    U = precision_cholesky(cov, covariance_type)
    P = structure.precisions(U)
    missing = rng.random((40, d)) < 0.4
    got = conditional_entropy(structure, U, K, missing)
    for n in range(40):
        m = np.flatnonzero(missing[n])
        for k in range(K):
            Pk = {"full": lambda k: P[k], "tied": lambda k: P}.get(
                covariance_type, lambda k: np.diag(np.broadcast_to(P[k], (d,)))
            )(k)
            expected = (
                0.0
                if not m.size
                else stats.multivariate_normal(cov=np.linalg.inv(Pk[np.ix_(m, m)])).entropy()
            )
            assert got[n, k] == pytest.approx(expected, abs=1e-12)


def test_bad_missing_data_is_named() -> None:
    bad = np.nan_to_num(X)
    bad[:, 1] = np.nan
    with pytest.raises(InputError, match="Column 1 of X has no observed value"):
        BayesianGaussianMixture(n_components=2).fit(bad)
    bad = np.nan_to_num(X)
    bad[1:, 2] = np.nan  # observed in row 0 alone, whose weight is 0
    w = np.ones(len(bad))
    w[0] = 0.0
    with pytest.raises(InputError, match="Column 2 of X has no observed value with a positive"):
        BayesianGaussianMixture(n_components=2).fit(bad, sample_weight=w)
    bad = X.copy()
    bad[4] = np.nan
    with pytest.raises(InputError, match=r"every value missing \(first at row 4\)"):
        BayesianGaussianMixture(n_components=2).fit(bad)
    bad = X.copy()
    bad[3, 0] = np.inf
    with pytest.raises(InputError, match="infinit"):
        BayesianGaussianMixture(n_components=2).fit(bad)


# -- engines and streamed tables ------------------------------------------------------------


class _CountingEngine:
    """An engine object of the user's (emkit.engines.Engine): the in-memory engine,
    counting its passes."""

    def __init__(self) -> None:
        from emkit.engines.memory import InMemoryEngine

        self.inner = InMemoryEngine(chunk_size=50, n_threads=1)
        self.passes = 0

    def map_reduce(self, fn: Any, source: Any) -> Any:
        self.passes += 1
        return self.inner.map_reduce(fn, source)

    def map_rows(self, fn: Any, source: Any) -> Any:
        self.passes += 1
        return self.inner.map_rows(fn, source)


def _assert_same_fit(a: BayesianGaussianMixture, b: BayesianGaussianMixture) -> None:
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-10)
    for name in ("weights_", "means_", "covariances_", "mean_prior_", "covariance_prior_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("covariance_type", "suffix", "nan"),
    [("full", ".npy", False), ("tied", ".csv", True), ("diag", ".parquet", True)],
)
def test_a_streamed_table_gives_the_in_memory_fit(
    tmp_path: pathlib.Path, covariance_type: str, suffix: str, nan: bool
) -> None:
    data = X if nan else np.nan_to_num(X, nan=0.5)
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    else:
        frame = pd.DataFrame(data, columns=["a", "b", "c"])
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    table = open_table(path, block_rows=64)
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(data))
    kw: dict[str, Any] = {"n_components": 3, "covariance_type": covariance_type}
    kw |= {"random_state": 0, "tol": 1e-6, "max_iter": 200}
    memory = BayesianGaussianMixture(**kw).fit(data, sample_weight=w)
    for engine in (None, "streaming", _CountingEngine()):
        streamed = BayesianGaussianMixture(engine=engine, **kw).fit(table, sample_weight=w)
        _assert_same_fit(memory, streamed)
        np.testing.assert_allclose(
            streamed.predict_proba(table), memory.predict_proba(data), atol=1e-10
        )
        np.testing.assert_array_equal(streamed.predict(table), memory.predict(data))
        np.testing.assert_allclose(
            streamed.score_samples(table), memory.score_samples(data), rtol=1e-10
        )
        assert streamed.score(table) == pytest.approx(memory.score(data), rel=1e-10)
        if isinstance(engine, _CountingEngine):
            assert engine.passes > memory.n_iter_  # every pass went through it


def test_an_engine_argument_is_checked_and_a_streamed_table_checked_against_the_fit(
    tmp_path: pathlib.Path,
) -> None:
    with pytest.raises(InputError, match=r"engine must be None, 'memory', 'streaming', 'dask' or"):
        BayesianGaussianMixture(engine="dask-ish").fit(X)
    np.save(tmp_path / "two.npy", np.nan_to_num(X)[:, :2])
    fitted = BayesianGaussianMixture(n_components=2, random_state=0).fit(X)
    with pytest.raises(InputError, match="X has 2 features, but BayesianGaussianMixture is"):
        fitted.predict(open_table(tmp_path / "two.npy"))
