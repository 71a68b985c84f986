"""MAP-EM for Gaussians: mclust's conjugate prior, worked by hand and against scipy.stats.

Every fit here runs with monotonicity="raise": the objective log-likelihood + log prior
never decreases in exact (MAP-)EM.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from emkit import MixtureModel
from emkit.exceptions import DegenerateComponentError, InputError
from emkit.families import Gaussian, GaussianPrior, Poisson, Product
from emkit.models.mixing import MixingWeights
from emkit.models.mixture import Mixture, MixtureParams

STRUCTURES = ["full", "tied", "diag", "spherical"]
X2 = np.array([[0.0, 1.0], [2.0, 0.5], [1.0, 3.0], [4.0, 2.0], [3.0, 5.0]])


def _fit_one_step(covariance_type: str, prior: GaussianPrior, X: np.ndarray, labels: np.ndarray):
    family = Gaussian(covariance_type, reg_covar=0.0, prior=prior).bind(X, None)
    model = Mixture(family)
    K = int(labels.max()) + 1
    stats_ = model.statistics_from_resp(X, None, np.eye(K)[labels])
    start = MixtureParams(np.full(K, 1.0 / K), family.default_params(K))
    return family, model, stats_, model.m_step(start, stats_).components


def test_full_map_update_is_mclusts_formula_worked_by_hand() -> None:
    # one component, d = 2: mu = (sum x + kappa mu0) / (N + kappa),
    # Sigma = (L + C + kappa N / (kappa + N) (xbar - mu0)(xbar - mu0)^T) / (nu + N + d + 2)
    mu0, kappa, nu, scale = np.array([1.0, 1.0]), 0.5, 4.0, np.array([[2.0, 0.3], [0.3, 1.0]])
    prior = GaussianPrior(mean=mu0, shrinkage=kappa, dof=nu, scale=scale)
    family, _, _, params = _fit_one_step("full", prior, X2, np.zeros(5, dtype=int))
    N, xbar = 5, X2.mean(axis=0)  # xbar = (2, 2.3)
    C = (X2 - xbar).T @ (X2 - xbar)
    mean = (X2.sum(axis=0) + kappa * mu0) / (N + kappa)
    np.testing.assert_allclose(mean, [10.5 / 5.5, 12.0 / 5.5])
    dev = (xbar - mu0)[:, None]
    cov = (scale + C + kappa * N / (kappa + N) * dev @ dev.T) / (nu + N + 2 + 2)
    np.testing.assert_allclose(family.user_means(params)[0], mean, rtol=1e-12)
    np.testing.assert_allclose(params.covariances[0], cov, rtol=1e-12)


@pytest.mark.parametrize(
    ("covariance_type", "expected"),
    [
        # diag: per feature (l_j + C_jj + kappa N/(kappa+N) (xbar_j - mu0_j)^2) / (nu + N + 3)
        ("diag", lambda C, dev, s, nu, N, d, K: (np.diag(s) + np.diag(C) + dev**2) / (nu + N + 3)),
        # spherical: (l + tr C + kappa N/(kappa+N) ||xbar - mu0||^2) / (nu + N d + d + 2)
        (
            "spherical",
            lambda C, dev, s, nu, N, d, K: (
                (np.trace(s) / d + np.trace(C) + dev @ dev) / (nu + N * d + d + 2)
            ),
        ),
    ],
)
def test_variance_map_updates_by_hand(covariance_type: str, expected) -> None:
    mu0, kappa, nu, scale = np.array([1.0, 1.0]), 0.5, 4.0, np.diag([2.0, 1.0])
    prior = GaussianPrior(mean=mu0, shrinkage=kappa, dof=nu, scale=scale)
    _, _, _, params = _fit_one_step(covariance_type, prior, X2, np.zeros(5, dtype=int))
    N, d, xbar = 5, 2, X2.mean(axis=0)
    C = (X2 - xbar).T @ (X2 - xbar)
    dev = np.sqrt(kappa * N / (kappa + N)) * (xbar - mu0)
    np.testing.assert_allclose(
        np.ravel(params.covariances), np.ravel(expected(C, dev, scale, nu, N, d, 1)), rtol=1e-12
    )


def test_tied_map_update_by_hand() -> None:
    # (L + sum_k [C_k + kappa N_k/(kappa+N_k) dev_k dev_k^T]) / (nu + N + d + 1 + K)
    mu0, kappa, nu, scale = np.array([1.0, 1.0]), 0.5, 4.0, np.eye(2)
    prior = GaussianPrior(mean=mu0, shrinkage=kappa, dof=nu, scale=scale)
    labels = np.array([0, 0, 1, 1, 1])
    _, _, _, params = _fit_one_step("tied", prior, X2, labels)
    B = scale.copy()
    for k in range(2):
        Xk = X2[labels == k]
        Nk, xbar = len(Xk), Xk.mean(axis=0)
        dev = (xbar - mu0)[:, None]
        B += (Xk - xbar).T @ (Xk - xbar) + kappa * Nk / (kappa + Nk) * dev @ dev.T
    np.testing.assert_allclose(params.covariances, B / (nu + 5 + 2 + 1 + 2), rtol=1e-12)


def _map_objective(family, model, params: MixtureParams, X: np.ndarray, resp: np.ndarray) -> float:
    """Expected complete-data log-likelihood plus log prior of the components."""
    log_joint = model.weighted_log_prob(params)(X) - np.log(params.weights)
    return float(np.sum(resp * log_joint)) + family.log_prior(params.components)


@pytest.mark.parametrize("covariance_type", STRUCTURES)
def test_map_m_step_maximizes_q_plus_log_prior(covariance_type: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) + np.repeat([[0, 0, 0], [3, 1, 0]], 20, axis=0)
    resp = rng.dirichlet([1.0, 1.0], size=40)
    family = Gaussian(covariance_type, reg_covar=0.0, prior="auto").bind(X, None)
    model = Mixture(family)
    stats_ = model.statistics_from_resp(X, None, resp)
    best = model.m_step(MixtureParams(np.full(2, 0.5), family.default_params(2)), stats_)
    top = _map_objective(family, model, best, X, resp)
    comp = best.components
    for _ in range(20):
        means = comp.means + 0.05 * rng.normal(size=comp.means.shape)
        cov = comp.covariances * np.exp(0.05 * rng.normal())
        other = best._replace(components=family.params_from_covariances(means + family.shift, cov))
        assert _map_objective(family, model, other, X, resp) < top


def test_log_prior_matches_scipy_normal_inverse_wishart() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    prior = GaussianPrior(mean=[0.5, -0.5], shrinkage=0.3, dof=5.0, scale=[[1.5, 0.2], [0.2, 0.7]])
    family = Gaussian("full", prior=prior).bind(X, None)
    means = np.array([[0.1, 0.2], [1.0, -1.0]])
    covs = np.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 0.4]]])
    params = family.params_from_covariances(means, covs)
    expected = sum(
        stats.multivariate_normal(prior.mean, covs[k] / 0.3).logpdf(means[k])
        + stats.invwishart(df=5.0, scale=prior.scale).logpdf(covs[k])
        for k in range(2)
    )
    assert family.log_prior(params) == pytest.approx(expected, rel=1e-10)


def test_diag_log_prior_matches_scipy_normal_inverse_gamma() -> None:
    X = np.random.default_rng(2).normal(size=(30, 2))
    prior = GaussianPrior(mean=[0.0, 1.0], shrinkage=2.0, dof=3.0, scale=[0.5, 2.0])
    family = Gaussian("diag", prior=prior).bind(X, None)
    means, var = np.array([[0.3, 0.4]]), np.array([[0.8, 1.7]])
    params = family.params_from_covariances(means, var)
    expected = np.sum(
        stats.norm(prior.mean, np.sqrt(var[0] / 2.0)).logpdf(means[0])
        + stats.invgamma(a=1.5, scale=np.array([0.25, 1.0])).logpdf(var[0])
    )
    assert family.log_prior(params) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("covariance_type", STRUCTURES)
def test_map_em_objective_is_loglik_plus_log_prior_and_never_decreases(
    covariance_type: str,
) -> None:
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(4, 0.5, (80, 2))])
    model = MixtureModel(
        Gaussian(covariance_type, prior="auto"),
        2,
        weight_concentration=3.0,
        tol=0.0,
        max_iter=30,
        random_state=0,
        monotonicity="raise",
    ).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)
    # the objective at the last iteration: per-sample log-likelihood + log prior / n,
    # of the parameters before the last M-step; refit one step from them to check it
    mixture = Mixture(model.family_, weights=MixingWeights(3.0))
    log_prior = mixture.log_prior(model.params_)
    one_more = model.score(X) + log_prior / len(X)
    assert one_more >= model.lower_bound_ - 1e-12


def test_prior_fits_degenerate_data_without_warnings() -> None:
    rng = np.random.default_rng(4)
    # a constant column, and a component that gets a single far-away point
    X = np.column_stack([rng.normal(size=60), np.full(60, 2.0)])
    X[0] = [40.0, 2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MixtureModel(
            Gaussian("full", reg_covar=0.0, prior="auto"), 3, random_state=0, monotonicity="raise"
        ).fit(X)
    assert np.all(np.isfinite(model.covariances_))
    assert np.all(np.linalg.eigvalsh(model.covariances_) > 0)


def test_without_prior_the_same_data_degenerates() -> None:
    X = np.column_stack([np.random.default_rng(4).normal(size=60), np.full(60, 2.0)])
    with pytest.raises(DegenerateComponentError, match=r"with reg_covar=0, the covariance"):
        MixtureModel(Gaussian("full", reg_covar=0.0), 2, random_state=0).fit(X)


def test_prior_shapes_are_checked() -> None:
    X = np.zeros((5, 3)) + np.arange(5)[:, None]
    with pytest.raises(InputError, match=r"GaussianPrior mean must have shape \(3,\)"):
        Gaussian(prior=GaussianPrior(mean=[0.0, 1.0])).bind(X, None)
    with pytest.raises(InputError, match="dof must be > n_features - 1"):
        Gaussian(prior=GaussianPrior(dof=1.0)).bind(X, None)
    with pytest.raises(InputError, match="symmetric positive-definite"):
        Gaussian(prior=GaussianPrior(scale=-np.eye(3))).bind(X, None)
    with pytest.raises(InputError, match="shrinkage must be finite and >= 0"):
        GaussianPrior(shrinkage=-1.0)
    with pytest.raises(InputError, match="takes a prior of type GaussianPrior"):
        Gaussian(prior=1.0)


def test_weight_prior_is_the_dirichlet_mode() -> None:
    # weights = (N_k + alpha - 1) / (N + K (alpha - 1)), worked for N = (3, 1), alpha = 3
    X = np.array([[0.0], [0.1], [0.2], [5.0]])
    family = Product({"x": ([0], Poisson())}).bind(X, None)
    model = Mixture(family, weights=MixingWeights(3.0))
    stats_ = model.statistics_from_resp(X, None, np.eye(2)[[0, 0, 0, 1]])
    params = model.m_step(MixtureParams(np.full(2, 0.5), family.default_params(2)), stats_)
    np.testing.assert_allclose(params.weights, [5.0 / 8.0, 3.0 / 8.0], rtol=1e-12)
    with pytest.raises(InputError, match="weight_concentration must be a finite number >= 1"):
        MixtureModel(Poisson(), 2, weight_concentration=0.5).fit(X)
