"""Student-t mixtures: densities against scipy.stats, the EM optimum against a direct
numerical maximization, monotonicity, weights, robustness, the Gaussian limit, sampling
and errors. Fits that check the EM trace use monotonicity="raise", so any decrease of the
log-likelihood fails the test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import multivariate_t

from emkit import GaussianMixture, InputError, StudentTMixture
from emkit.families.gaussian import covariance_structure
from emkit.models.student_t import DegreesOfFreedom

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
DOF_TYPES = ["per-component", "shared", "fixed"]


def t_blobs(n: int = 300, d: int = 2, seed: int = 0, nu: float = 3.0) -> np.ndarray:
    """Two heavy-tailed clusters, 8 apart, with correlated scales."""
    rng = np.random.default_rng(seed)
    A = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, -0.3, 0.9]])[:d, :d]
    first = rng.standard_t(nu, (n // 2, d)) @ A.T
    second = rng.standard_t(nu, (n - n // 2, d)) * 0.7 + 8.0
    return rng.permutation(np.vstack([first, second]))


def reference_log_density(tm: StudentTMixture, X: np.ndarray) -> np.ndarray:
    """log sum_k pi_k t(x; mu_k, Sigma_k, nu_k) from scipy.stats.multivariate_t."""
    d = X.shape[1]
    structure = covariance_structure(tm.covariance_type)
    parts = [
        np.log(w)
        + multivariate_t(
            tm.means_[k], structure.component_covariance(tm.covariances_, k, d), df=nu
        ).logpdf(X)
        for k, (w, nu) in enumerate(zip(tm.weights_, tm.degrees_of_freedom_, strict=True))
    ]
    return np.asarray(logsumexp(np.column_stack(parts), axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_densities_match_scipy_multivariate_t(covariance_type: str) -> None:
    X = t_blobs(120)
    tm = StudentTMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    np.testing.assert_allclose(tm.score_samples(X), reference_log_density(tm, X), rtol=1e-10)
    proba = tm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(tm.predict(X), proba.argmax(axis=1))
    assert tm.degrees_of_freedom_.shape == (2,)


def _negative_loglik(theta: np.ndarray, X: np.ndarray, K: int) -> float:
    """-sum_n log sum_k pi_k t(x_n; mu_k, L_k L_k^T, nu_k), parameters unconstrained:
    softmax logits, means, Cholesky factors with log diagonals, log nu. Rows with missing
    values (NaN) count the t marginal of their observed coordinates."""
    n, d = X.shape
    m = d * (d + 1) // 2
    logits = np.concatenate([[0.0], theta[: K - 1]])
    rest = theta[K - 1 :].reshape(K, d + m + 1)
    parts = []
    for k in range(K):
        L = np.zeros((d, d))
        L[np.tril_indices(d)] = rest[k, d : d + m]
        L[np.diag_indices(d)] = np.exp(np.diag(L))
        nu, mean, scale = np.exp(rest[k, -1]), rest[k, :d], L @ L.T
        logpdf = np.empty(n)
        observed = ~np.isnan(X)
        for o in np.unique(observed, axis=0):
            rows = (observed == o).all(axis=1)
            marginal = multivariate_t(mean[o], scale[np.ix_(o, o)], df=nu)
            logpdf[rows] = marginal.logpdf(X[np.ix_(rows, o)]).reshape(-1)
        parts.append(logits[k] - logsumexp(logits) + logpdf)
    return -float(logsumexp(np.column_stack(parts), axis=1).sum())


def _theta(tm: StudentTMixture) -> np.ndarray:
    K, d = tm.means_.shape
    blocks = []
    for k in range(K):
        L = np.linalg.cholesky(tm.covariances_[k])
        L[np.diag_indices(d)] = np.log(np.diag(L))
        blocks.append(
            np.concatenate(
                [tm.means_[k], L[np.tril_indices(d)], [np.log(tm.degrees_of_freedom_[k])]]
            )
        )
    logw = np.log(tm.weights_)
    return np.concatenate([logw[1:] - logw[0], *blocks])


@pytest.mark.parametrize(
    ("d", "K", "missing"), [(1, 1, 0), (2, 1, 0), (1, 2, 0), (2, 2, 0), (2, 1, 0.2), (2, 2, 0.15)]
)
def test_log_likelihood_reaches_direct_maximization(d: int, K: int, missing: float) -> None:
    rng = np.random.default_rng(d + 10 * K)
    X = t_blobs(80, d, seed=d + K) if K == 2 else rng.standard_t(4.0, (60, d))
    drop = rng.random(X.shape) < missing
    drop[drop.all(axis=1), 0] = False  # a row keeps one observed value
    X[drop] = np.nan
    tm = StudentTMixture(
        K, tol=1e-12, max_iter=5000, reg_covar=1e-12, random_state=0, monotonicity="raise"
    ).fit(X)
    assert tm.converged_
    em = tm.score(X) * X.shape[0]
    # the optimizer starts away from EM's answer and must come back to it, not beyond
    start = _theta(tm) + 0.05 * rng.standard_normal(_theta(tm).shape)
    direct = minimize(_negative_loglik, start, args=(X, K), method="BFGS", options={"gtol": 1e-9})
    assert em >= -direct.fun - 1e-6 * abs(direct.fun)
    assert em == pytest.approx(-direct.fun, rel=1e-6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    dof_type=st.sampled_from(DOF_TYPES),
    max_m_step_iter=st.sampled_from([None, 1, 2]),
    accelerate=st.sampled_from([None, "squarem"]),
)
def test_objective_never_decreases(
    seed: int,
    covariance_type: str,
    dof_type: str,
    max_m_step_iter: int | None,
    accelerate: str | None,
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_t(rng.uniform(1.0, 6.0), (60, 2)) + rng.integers(0, 2, (60, 1)) * 3.0
    tm = StudentTMixture(
        2,
        covariance_type=covariance_type,
        dof_type=dof_type,
        degrees_of_freedom=float(rng.uniform(0.5, 20.0)),
        max_m_step_iter=max_m_step_iter,
        accelerate=accelerate,
        tol=0.0,
        max_iter=25,
        random_state=seed,
        monotonicity="raise",  # allows a decrease only within the reg_covar's bounded slack
    ).fit(X)
    assert tm.n_iter_ == 25 and np.isfinite(tm.lower_bounds_).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dof_type", DOF_TYPES)
def test_objective_never_decreases_strictly(covariance_type: str, dof_type: str) -> None:
    # no component near collapse: every step is exact up to round-off
    X = t_blobs(200)
    tm = StudentTMixture(
        2,
        covariance_type=covariance_type,
        dof_type=dof_type,
        degrees_of_freedom=20.0,
        tol=0.0,
        max_iter=30,
        random_state=0,
        monotonicity="raise",
    ).fit(X)
    assert np.all(np.diff(tm.lower_bounds_) >= -1e-13 * np.abs(tm.lower_bounds_[1:]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type: str) -> None:
    X = t_blobs(60)
    counts = np.random.default_rng(1).integers(0, 4, X.shape[0])
    kwargs = {"covariance_type": covariance_type, "tol": 1e-10, "max_iter": 1000}
    weighted = StudentTMixture(2, random_state=0, **kwargs).fit(X, sample_weight=counts)
    repeated = StudentTMixture(2, random_state=0, **kwargs).fit(np.repeat(X, counts, axis=0))
    order_w, order_r = np.argsort(weighted.means_[:, 0]), np.argsort(repeated.means_[:, 0])
    for name in ["weights_", "means_", "degrees_of_freedom_"]:
        np.testing.assert_allclose(
            getattr(weighted, name)[order_w], getattr(repeated, name)[order_r], rtol=1e-6
        )
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-8)


def test_means_resist_outliers_where_gaussian_means_move() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [6.0, 0.0]])
    X = np.vstack([rng.normal(size=(150, 2)) + c for c in centers])
    angle = rng.uniform(0, 2 * np.pi, 12)
    outliers = np.column_stack([np.cos(angle), np.sin(angle)]) * rng.uniform(30, 60, (12, 1))
    X = np.vstack([X, outliers])
    # k-means starts give the outliers a cluster of their own; starts from data rows let
    # the likelihood choose (for both models: the best of 5)
    kwargs = {"random_state": 0, "n_init": 5, "init_params": "random_from_data", "max_iter": 1000}
    tm = StudentTMixture(2, **kwargs).fit(X)  # type: ignore[arg-type]
    gm = GaussianMixture(2, **kwargs).fit(X)  # type: ignore[arg-type]
    t_error = np.abs(tm.means_[np.argsort(tm.means_[:, 0])] - centers).max()
    g_means = gm.means_[np.argsort(gm.means_[:, 0])]
    assert t_error < 0.3
    # the Gaussian mixture either spends a component on the outliers or drags a mean
    assert np.abs(g_means - centers).max() > 3.0 * t_error + 1.0


def test_large_dof_approaches_gaussian_mixture() -> None:
    X = t_blobs(200, nu=50.0)
    gm = GaussianMixture(2, tol=1e-10, max_iter=500, random_state=0).fit(X)
    tm = StudentTMixture(
        2, dof_type="fixed", degrees_of_freedom=1e6, tol=1e-10, max_iter=500, random_state=0
    ).fit(X)
    order_g, order_t = np.argsort(gm.means_[:, 0]), np.argsort(tm.means_[:, 0])
    np.testing.assert_allclose(tm.means_[order_t], gm.means_[order_g], atol=1e-4)
    np.testing.assert_allclose(tm.covariances_[order_t], gm.covariances_[order_g], atol=1e-4)
    assert tm.lower_bound_ == pytest.approx(gm.lower_bound_, rel=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_moments(covariance_type: str) -> None:
    X = t_blobs(200)
    tm = StudentTMixture(
        2, covariance_type=covariance_type, dof_type="fixed", degrees_of_freedom=8.0, random_state=0
    ).fit(X)
    samples, labels = tm.sample(60000)
    assert samples.shape == (60000, 2)
    np.testing.assert_allclose(np.bincount(labels) / 60000, tm.weights_, atol=0.01)
    structure = covariance_structure(covariance_type)
    for k in range(2):
        Xk = samples[labels == k]
        np.testing.assert_allclose(Xk.mean(axis=0), tm.means_[k], atol=0.05)
        cov = 8.0 / 6.0 * structure.component_covariance(tm.covariances_, k, 2)
        np.testing.assert_allclose(np.cov(Xk.T), cov, atol=0.1 * np.abs(cov).max())


def test_degrees_of_freedom_options() -> None:
    X = t_blobs(200)
    fixed = StudentTMixture(2, dof_type="fixed", degrees_of_freedom=7.5, random_state=0).fit(X)
    np.testing.assert_array_equal(fixed.degrees_of_freedom_, [7.5, 7.5])
    shared = StudentTMixture(2, dof_type="shared", random_state=0).fit(X)
    assert shared.degrees_of_freedom_[0] == shared.degrees_of_freedom_[1]
    free = StudentTMixture(2, random_state=0, tol=1e-8, max_iter=500).fit(X)
    # the data's tails are those of t_3
    assert np.all((free.degrees_of_freedom_ > 1.5) & (free.degrees_of_freedom_ < 6.0))
    # one parameter less with a shared nu, K less with a fixed one
    assert shared._n_parameters() == free._n_parameters() - 1
    assert fixed._n_parameters() == free._n_parameters() - 2
    n = X.shape[0]
    assert free.bic(X) == pytest.approx(-2 * free.score(X) * n + free._n_parameters() * np.log(n))


def test_degrees_of_freedom_m_step_is_the_root_and_bounded_solve_never_loses() -> None:
    # sum r (E[log u] - E[u]) / N = -1.2: the root of log(nu/2) - psi(nu/2) + 1 - 1.2 = 0
    from scipy.special import digamma

    nk, log_u = np.array([10.0]), np.array([-12.0])
    nu = DegreesOfFreedom().m_step(np.array([30.0]), nk, log_u)
    assert np.log(nu[0] / 2) - digamma(nu[0] / 2) - 0.2 == pytest.approx(0.0, abs=1e-12)
    # the bounded solve (one or two iterations) raises nu's objective from either side of
    # the maximum
    from scipy.special import gammaln

    def q(v: float) -> float:
        return 10.0 * (v / 2 * np.log(v / 2) - gammaln(v / 2)) + v / 2 * -12.0

    for start in [30.0, 1.0, 1e5]:
        for max_iter in [1, 2]:
            bounded = DegreesOfFreedom(max_iter=max_iter).m_step(np.array([start]), nk, log_u)
            assert q(bounded[0]) > q(start)


def test_bounded_dof_solve_reaches_the_same_optimum() -> None:
    X = t_blobs(200)
    kwargs = {"tol": 1e-10, "max_iter": 2000, "random_state": 0, "monotonicity": "raise"}
    exact = StudentTMixture(2, **kwargs).fit(X)  # type: ignore[arg-type]
    bounded = StudentTMixture(2, max_m_step_iter=2, **kwargs).fit(X)  # type: ignore[arg-type]
    assert bounded.lower_bound_ == pytest.approx(exact.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(bounded.degrees_of_freedom_, exact.degrees_of_freedom_, rtol=1e-3)


def test_squarem_and_hard_e_step() -> None:
    X = t_blobs(200)
    plain = StudentTMixture(2, tol=1e-10, max_iter=2000, random_state=0).fit(X)
    fast = StudentTMixture(
        2, tol=1e-10, max_iter=2000, random_state=0, accelerate="squarem", monotonicity="raise"
    ).fit(X)
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, rel=1e-7)
    assert fast.n_iter_ < plain.n_iter_
    hard = StudentTMixture(2, e_step="hard", random_state=0, monotonicity="raise").fit(X)
    assert set(np.unique(hard.predict(X))) == {0, 1}


def test_warm_start_continues_from_the_fit() -> None:
    X = t_blobs(200)
    tm = StudentTMixture(2, warm_start=True, max_iter=3, tol=0.0, random_state=0)
    first = tm.fit(X).lower_bound_
    # the second fit starts where the first ended: its first objective is the first's next
    assert tm.fit(X).lower_bounds_[0] > first
    cold = StudentTMixture(2, max_iter=3, tol=0.0, random_state=0).fit(X)
    assert cold.lower_bounds_[0] < first


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dof_type": "student"}, "dof_type must be one of"),
        ({"dof_type": "fixed"}, "dof_type='fixed' needs degrees_of_freedom"),
        ({"degrees_of_freedom": -1.0}, r"degrees_of_freedom must be a number in \[0.01"),
        ({"degrees_of_freedom": "4"}, "degrees_of_freedom must be a number"),
        ({"max_m_step_iter": 0}, "max_m_step_iter must be an integer >= 1"),
        ({"covariance_type": "banded"}, "covariance_type must be one of"),
        ({"reg_covar": 0.0}, "reg_covar must be > 0"),
        ({"e_step": "variational"}, "e_step must be one of"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        StudentTMixture(2, **kwargs).fit(t_blobs(40))  # type: ignore[arg-type]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_values_marginal_densities_and_monotone_fit(covariance_type: str) -> None:
    rng = np.random.default_rng(3)
    X = t_blobs(150, 3)
    drop = rng.random(X.shape) < 0.2
    drop[drop.all(axis=1), 1] = False
    X[drop] = np.nan
    tm = StudentTMixture(
        2, covariance_type=covariance_type, random_state=0, monotonicity="raise", tol=1e-6
    ).fit(X)
    assert tm.converged_
    # the density of a row is the t marginal of its observed coordinates
    structure = covariance_structure(covariance_type)
    expected = np.empty(X.shape[0])
    for n, row in enumerate(X):
        o = ~np.isnan(row)
        expected[n] = logsumexp(
            [
                np.log(tm.weights_[k])
                + multivariate_t(
                    tm.means_[k, o],
                    structure.component_covariance(tm.covariances_, k, 3)[np.ix_(o, o)],
                    df=tm.degrees_of_freedom_[k],
                ).logpdf(row[o])
                for k in range(2)
            ]
        )
    np.testing.assert_allclose(tm.score_samples(X), expected, rtol=1e-10)
    # the complete rows alone score as before
    complete = ~np.isnan(X).any(axis=1)
    np.testing.assert_allclose(
        tm.score_samples(X[complete]), reference_log_density(tm, X[complete]), rtol=1e-10
    )


def test_bad_data() -> None:
    X = t_blobs(40)
    X[3, :] = np.nan
    with pytest.raises(InputError, match="row 3"):
        StudentTMixture(2).fit(X)
    X[3, :] = [np.inf, 0.0]
    with pytest.raises(InputError, match="contains infinity"):
        StudentTMixture(2).fit(X)
    with pytest.raises(InputError, match="X has 1 sample; fitting a mixture needs at least 2"):
        StudentTMixture(1).fit(t_blobs(1))
    with pytest.raises(InputError, match="n_components=5: a mixture needs at least"):
        StudentTMixture(5).fit(t_blobs(4))
    with pytest.raises(InputError, match="sample_weight"):
        StudentTMixture(2).fit(t_blobs(40), sample_weight=-np.ones(40))
    tm = StudentTMixture(2, random_state=0).fit(t_blobs(40))
    with pytest.raises(ValueError, match="features"):
        tm.predict(np.ones((3, 3)))
