"""Tests of the non-Gaussian component families: Poisson, Bernoulli, Categorical,
Multinomial, Exponential, Gamma and LogNormal.

For each: log-densities against scipy.stats, the M-step against closed-form (or scipy's)
maximum likelihood on hard assignments, the MAP update against (phi + S) / (nu + N) on
small cases worked by hand, recovery of sampled mixtures by EM with the monotonicity
check raising, MAP objective = log-likelihood + log prior, degenerate data, input
validation, parameter counts and sampling moments.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy import stats
from scipy.special import digamma, logsumexp

from emkit.engines import RowSource
from emkit.engines.memory import InMemoryEngine
from emkit.exceptions import DegenerateComponentWarning, InputError
from emkit.families.bernoulli import Bernoulli
from emkit.families.beta import Beta as BetaFamily
from emkit.families.beta import _solve_beta
from emkit.families.categorical import Categorical
from emkit.families.exponential import Exponential
from emkit.families.gamma import Gamma, _log_minus_digamma, solve_gamma_shape
from emkit.families.lognormal import LogNormal
from emkit.families.multinomial import Multinomial
from emkit.families.poisson import Poisson
from emkit.families.priors import (
    BetaPrior,
    ConjugatePrior,
    DirichletPrior,
    GammaPrior,
    GaussianPrior,
)
from emkit.inference.em import fit_em
from emkit.models.mixture import Mixture, MixtureParams

EPS = float(np.finfo(np.float64).eps)


# -- helpers -----------------------------------------------------------------------------


def log_density(family: Any, params: Any, X: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """Full log p(x_n | k) = log_prob + row term, (n, K), through the mixture."""
    K = np.shape(params[0])[0]
    weights = np.full(K, 1.0 / K)
    log_joint = Mixture(family, dtype=dtype).weighted_log_prob(MixtureParams(weights, params))
    return log_joint(X) - np.log(weights)


def hard_stats(family: Any, X: np.ndarray, labels: np.ndarray, K: int) -> tuple[Any, Any]:
    """(N_k, S_k) for one-hot responsibilities."""
    s = Mixture(family).statistics_from_resp(X, None, np.eye(K)[labels])
    return s.nk, s.sum_t


def soft_stats(family: Any, X: np.ndarray, resp: np.ndarray) -> tuple[Any, Any]:
    s = Mixture(family).statistics_from_resp(X, None, resp)
    return s.nk, s.sum_t


def m_step(family: Any, nk: np.ndarray, sum_t: np.ndarray) -> Any:
    K = nk.shape[0]
    return family.m_step(family.default_params(K), nk, sum_t, np.zeros(0), float(nk.sum()))


def fit(family: Any, X: np.ndarray, start: Any, **options: Any) -> tuple[Mixture, Any]:
    """EM to convergence from ``start`` with the monotonicity check raising."""
    model = Mixture(family, **options)
    with InMemoryEngine() as engine:
        result = fit_em(
            model, engine, RowSource(X), start, tol=1e-10, max_iter=1000, monotonicity="raise"
        )
    assert result.converged
    return model, result


def sample_mixture(
    family: Any, weights: np.ndarray, params: Any, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of a mixture (shuffled) and their components."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, weights)
    X = np.vstack([family.sample(params, k, int(c), rng) for k, c in enumerate(counts)])
    labels = np.repeat(np.arange(len(weights)), counts)
    order = rng.permutation(n)
    return X[order], labels[order]


RESP3 = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # the hand-worked cases' responsibilities


# -- (a) log-densities against scipy.stats -----------------------------------------------


@dataclass
class DensityCase:
    family: Callable[[], Any]
    data: Callable[[np.random.Generator], np.ndarray]
    params: Callable[[Any], Any]
    reference: Callable[[Any, np.ndarray], np.ndarray]  # (n, K)


def _categorical_reference(params: Any, X: np.ndarray) -> np.ndarray:
    p = np.asarray(params.probabilities)
    offsets = np.concatenate([[0], np.cumsum((3, 2, 4))])
    codes = X.astype(int) + offsets[:-1]
    return np.log(p[:, codes]).sum(axis=2).T


def _lognormal_full_reference(params: Any, X: np.ndarray, family: Any) -> np.ndarray:
    means = family.fitted_attributes(params)["log_means"]
    return np.stack(
        [
            stats.multivariate_normal.logpdf(np.log(X), means[k], params.covariances[k])
            - np.log(X).sum(axis=1)
            for k in range(2)
        ],
        axis=1,
    )


DENSITY_CASES = {
    "poisson": DensityCase(
        Poisson,
        lambda rng: rng.poisson([1.0, 4.0, 0.5], size=(60, 3)).astype(float),
        lambda f: f.default_params(2)._replace(rates=np.array([[1.0, 4.0, 0.5], [3.0, 1.0, 2.0]])),
        lambda p, X: stats.poisson.logpmf(X[:, None, :], p.rates[None]).sum(axis=2),
    ),
    "beta": DensityCase(
        BetaFamily,
        lambda rng: rng.beta(2.0, 3.0, size=(60, 2)),
        lambda f: f.default_params(2)._replace(
            a=np.array([[0.5, 2.0], [7.0, 1.0]]), b=np.array([[0.5, 3.0], [2.0, 40.0]])
        ),
        lambda p, X: stats.beta.logpdf(X[:, None, :], p.a[None], p.b[None]).sum(axis=2),
    ),
    "bernoulli": DensityCase(
        Bernoulli,
        lambda rng: (rng.random((60, 3)) < 0.4).astype(float),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 1e-9]])
        ),
        lambda p, X: stats.bernoulli.logpmf(X[:, None, :], p.probabilities[None]).sum(axis=2),
    ),
    "categorical": DensityCase(
        Categorical,
        lambda rng: np.stack(
            [rng.integers(0, 3, 60), rng.integers(0, 2, 60), rng.integers(0, 4, 60)], axis=1
        ).astype(float),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array(
                [
                    [0.2, 0.3, 0.5, 0.9, 0.1, 0.1, 0.2, 0.3, 0.4],
                    [0.6, 0.3, 0.1, 0.5, 0.5] + [0.25] * 4,
                ]
            )
        ),
        _categorical_reference,
    ),
    "multinomial": DensityCase(
        Multinomial,
        lambda rng: np.vstack(
            [rng.multinomial(rng.integers(0, 40), [0.2, 0.3, 0.5], size=1) for _ in range(60)]
        ).astype(float),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
        ),
        lambda p, X: np.stack(
            [stats.multinomial.logpmf(X, X.sum(axis=1), p.probabilities[k]) for k in range(2)],
            axis=1,
        ),
    ),
    "exponential": DensityCase(
        Exponential,
        lambda rng: np.vstack([rng.exponential(2.0, size=(59, 2)), np.zeros((1, 2))]),
        lambda f: f.default_params(2)._replace(rates=np.array([[0.5, 2.0], [3.0, 0.1]])),
        lambda p, X: stats.expon.logpdf(X[:, None, :], scale=1.0 / p.rates[None]).sum(axis=2),
    ),
    "gamma": DensityCase(
        Gamma,
        lambda rng: rng.gamma(2.0, 1.5, size=(60, 2)),
        lambda f: f.default_params(2)._replace(
            shapes=np.array([[0.5, 2.0], [7.0, 1.0]]), rates=np.array([[1.0, 0.3], [2.0, 5.0]])
        ),
        lambda p, X: stats.gamma.logpdf(
            X[:, None, :], p.shapes[None], scale=1.0 / p.rates[None]
        ).sum(axis=2),
    ),
    "lognormal": DensityCase(
        LogNormal,
        lambda rng: np.exp(rng.normal(1.0, 0.7, size=(60, 2))),
        lambda f: f.gaussian.params_from_covariances(
            np.array([[0.0, 1.0], [2.0, -1.0]]), np.array([[0.5, 1.5], [0.2, 0.8]])
        ),
        lambda p, X: np.stack(
            [
                stats.lognorm.logpdf(X, s=np.sqrt(p.covariances[k]), scale=np.exp(m)).sum(axis=1)
                for k, m in enumerate(np.array([[0.0, 1.0], [2.0, -1.0]]))
            ],
            axis=1,
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(DENSITY_CASES))
def test_log_density_matches_scipy(name: str) -> None:
    case = DENSITY_CASES[name]
    X = case.data(np.random.default_rng(1))
    family = case.family().bind(X, None)
    params = case.params(family)
    expected = case.reference(params, X)
    assert_allclose(log_density(family, params, X), expected, rtol=1e-10, atol=1e-10)
    # float32 working arrays: the same densities to float32 precision
    got32 = log_density(family, params, X, dtype=np.float32)
    assert_allclose(got32, expected, rtol=1e-4, atol=1e-3)


def test_lognormal_full_covariance_density_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    X = np.exp(rng.multivariate_normal([0.0, 1.0], [[0.5, 0.3], [0.3, 0.4]], size=50))
    family = LogNormal("full").bind(X, None)
    covs = np.array([[[0.5, 0.3], [0.3, 0.4]], [[1.0, -0.2], [-0.2, 0.3]]])
    params = family.gaussian.params_from_covariances(np.array([[0.0, 1.0], [1.0, 0.0]]), covs)
    expected = _lognormal_full_reference(params, X, family)
    assert_allclose(log_density(family, params, X), expected, rtol=1e-10)


def test_log_factorials_beyond_the_table_match_scipy() -> None:
    # counts above the bound family's log(x!) table fall back to gammaln
    X = np.array([[3.0, 0.0, 1.0], [70000.0, 2.0, 5.0]])
    family = Multinomial().bind(X[:1], None)
    params = family.default_params(1)._replace(probabilities=np.array([[0.5, 0.2, 0.3]]))
    expected = stats.multinomial.logpmf(X, X.sum(axis=1), [0.5, 0.2, 0.3])
    assert_allclose(log_density(family, params, X)[:, 0], expected, rtol=1e-12)
    poisson = Poisson().bind(X[:1], None)
    rates = poisson.default_params(1)._replace(rates=np.array([[2.0, 1.0, 3.0]]))
    expected = stats.poisson.logpmf(X, [2.0, 1.0, 3.0]).sum(axis=1)
    assert_allclose(log_density(poisson, rates, X)[:, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(DENSITY_CASES))
def test_statistics_fill_a_given_statistic_major_buffer(name: str) -> None:
    case = DENSITY_CASES[name]
    X = case.data(np.random.default_rng(3))
    family = case.family().bind(X, None)
    Xp = family.prepare(X, np.float64)
    T = np.array(family.statistics(Xp))
    buf = np.full((family.n_stats, X.shape[0]), np.nan)
    assert_allclose(family.statistics(Xp, out=buf), T)
    assert_allclose(buf, T.T)


# -- (b) the M-step against maximum likelihood on hard assignments -------------------------


def test_poisson_bernoulli_exponential_m_step_is_the_per_cluster_mle() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], [30, 50, 20])
    counts = rng.poisson(3.0, size=(100, 2)).astype(float)
    binary = (rng.random((100, 3)) < 0.5).astype(float)
    positive = rng.exponential(2.0, size=(100, 2))
    means = lambda X: np.stack([X[labels == k].mean(axis=0) for k in range(3)])  # noqa: E731
    for family, X, get, expected in [
        (Poisson(), counts, lambda p: p.rates, means(counts)),
        (Bernoulli(), binary, lambda p: p.probabilities, means(binary)),
        (Exponential(), positive, lambda p: p.rates, 1.0 / means(positive)),
    ]:
        bound = family.bind(X, None)
        assert_allclose(get(m_step(bound, *hard_stats(bound, X, labels, 3))), expected, rtol=1e-12)


def test_categorical_and_multinomial_m_step_are_the_frequencies() -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [40, 60])
    X = np.stack([rng.integers(0, 3, 100), rng.integers(0, 5, 100)], axis=1).astype(float)
    family = Categorical().bind(X, None)
    params = m_step(family, *hard_stats(family, X, labels, 2))
    fitted = family.fitted_attributes(params)["probabilities"]
    for j, C in enumerate((3, 5)):
        for k in range(2):
            freq = np.bincount(X[labels == k, j].astype(int), minlength=C) / np.sum(labels == k)
            assert_allclose(fitted[j][k], freq, rtol=1e-12)
    counts = rng.multinomial(20, [0.1, 0.2, 0.7], size=100).astype(float)
    counts[:10] = rng.multinomial(5, [0.5, 0.5, 0.0], size=10)  # other totals
    family = Multinomial().bind(counts, None)
    params = m_step(family, *hard_stats(family, counts, labels, 2))
    for k in range(2):
        total = counts[labels == k].sum(axis=0)
        assert_allclose(params.probabilities[k], total / total.sum(), rtol=1e-12)


def test_gamma_m_step_matches_scipy_fit() -> None:
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1], [150, 250])
    X = np.vstack([rng.gamma(0.7, 3.0, size=(150, 2)), rng.gamma(12.0, 0.2, size=(250, 2))])
    family = Gamma().bind(X, None)
    params = m_step(family, *hard_stats(family, X, labels, 2))
    for k in range(2):
        for j in range(2):
            shape, _, scale = stats.gamma.fit(X[labels == k, j], floc=0)
            assert_allclose(params.shapes[k, j], shape, rtol=1e-6)
            assert_allclose(params.rates[k, j], 1.0 / scale, rtol=1e-6)
    assert family.m_step_gap(params, *hard_stats(family, X, labels, 2)) == 0.0


def test_lognormal_m_step_is_the_gaussian_mle_of_log_x() -> None:
    rng = np.random.default_rng(7)
    labels = np.repeat([0, 1], [80, 120])
    X = np.exp(rng.normal([0.0, 2.0], [1.0, 0.3], size=(200, 2)))
    family = LogNormal(reg_covar=0.0).bind(X, None)
    params = m_step(family, *hard_stats(family, X, labels, 2))
    fitted = family.fitted_attributes(params)
    for k in range(2):
        log_x = np.log(X[labels == k])
        assert_allclose(fitted["log_means"][k], log_x.mean(axis=0), rtol=1e-10)
        assert_allclose(fitted["log_covariances"][k], log_x.var(axis=0), rtol=1e-10)


def test_shape_solver_converges_over_the_whole_range() -> None:
    s = np.logspace(-9, 3, 60)
    shapes, converged = solve_gamma_shape(s, 50)
    assert converged.all()
    # log(a) - digamma(a) cancels for large a: the series there, checked against it below
    assert_allclose(_log_minus_digamma(shapes), s, rtol=1e-12)
    moderate = s > 1e-4
    assert_allclose((np.log(shapes) - digamma(shapes))[moderate], s[moderate], rtol=1e-11)
    # the bracket 1 / (2 s) < alpha < 1 / s
    assert np.all((shapes > 0.5 / s) & (shapes < 1.0 / s))
    a = np.linspace(12.0, 100.0, 50)  # where the series takes over, both are accurate
    assert_allclose(_log_minus_digamma(a), np.log(a) - digamma(a), rtol=1e-11)


# -- (c) the MAP update: (phi + sum_n r_nk t(x_n)) / (nu + sum_n r_nk), worked by hand -------
# Responsibilities RESP3: row 0 in component 0, row 1 half each, row 2 in component 1, so
# N = (1.5, 1.5), S_0 = x_0 + x_1 / 2 and S_1 = x_1 / 2 + x_2.


def test_poisson_map_update_by_hand() -> None:
    X = np.array([[0.0], [2.0], [4.0]])  # S = (1, 5)
    family = Poisson(prior=GammaPrior(3.0, 2.0)).bind(X, None)  # phi = a - 1 = 2, nu = b = 2
    params = m_step(family, *soft_stats(family, X, RESP3))
    assert_allclose(params.rates[:, 0], [(2 + 1) / (2 + 1.5), (2 + 5) / (2 + 1.5)])
    assert_allclose(params.rates[:, 0], [0.857142857142857, 2.0])


def test_bernoulli_map_update_by_hand() -> None:
    X = np.array([[1.0], [1.0], [0.0]])  # S = (1.5, 0.5)
    family = Bernoulli(BetaPrior(3.0, 2.0)).bind(X, None)  # phi = a - 1 = 2, nu = a + b - 2 = 3
    params = m_step(family, *soft_stats(family, X, RESP3))
    assert_allclose(params.probabilities[:, 0], [(2 + 1.5) / (3 + 1.5), (2 + 0.5) / (3 + 1.5)])
    assert_allclose(params.probabilities[:, 0], [0.777777777777778, 0.555555555555556])


def test_categorical_map_update_by_hand() -> None:
    X = np.array([[0.0], [2.0], [2.0]])  # S_0 = (1, 0, 0.5), S_1 = (0, 0, 1.5)
    family = Categorical(3, DirichletPrior(2.0)).bind(X, None)  # phi = 1 each, nu = 3
    params = m_step(family, *soft_stats(family, X, RESP3))
    expected = np.array([[2.0, 1.0, 1.5], [1.0, 1.0, 2.5]]) / (3 + 1.5)
    assert_allclose(params.probabilities, expected)
    assert_allclose(expected[0], [0.444444444444444, 0.222222222222222, 0.333333333333333])


def test_multinomial_map_update_by_hand() -> None:
    X = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    # S_0 = (2, 1, 1.5), S_1 = (1, 1, 2.5); phi = alpha - 1 = 1 each, nu = 3
    family = Multinomial(DirichletPrior(2.0)).bind(X, None)
    params = m_step(family, *soft_stats(family, X, RESP3))
    expected = np.array([[3.0, 2.0, 2.5], [2.0, 2.0, 3.5]]) / 7.5  # (phi + S) / (nu + M_k)
    assert_allclose(params.probabilities, expected)
    assert_allclose(expected[0], [0.4, 0.266666666666667, 0.333333333333333])


def test_exponential_map_update_by_hand() -> None:
    X = np.array([[0.5], [1.0], [3.0]])  # S = (1, 3.5)
    family = Exponential(GammaPrior(3.0, 2.0)).bind(X, None)  # phi = b = 2, nu = a - 1 = 2
    params = m_step(family, *soft_stats(family, X, RESP3))
    # E[x] = (phi + S) / (nu + N) = (3 / 3.5, 5.5 / 3.5); the rate is its inverse
    assert_allclose(params.rates[:, 0], [3.5 / 3.0, 3.5 / 5.5])
    assert_allclose(params.rates[:, 0], [1.166666666666667, 0.636363636363636])


def test_gamma_map_update_by_hand() -> None:
    X = np.array([[1.0], [2.0], [4.0]])
    # two pseudo-rows with sum x = 4 and sum log x = 0.5: phi = (4, 0.5), nu = 2
    family = Gamma(ConjugatePrior([4.0, 0.5], 2.0)).bind(X, None)
    params = m_step(family, *soft_stats(family, X, RESP3))
    # component 0: S = (1 + 2/2, 0 + log(2)/2) = (2, 0.346574); N = 1.5
    m = (4.0 + 2.0) / (2.0 + 1.5)  # 1.714286
    l = (0.5 + 0.5 * np.log(2.0)) / (2.0 + 1.5)  # 0.241878  # noqa: E741
    assert_allclose([m, l], [1.714285714285714, 0.241878168651421], rtol=1e-12)
    shape = params.shapes[0, 0]
    assert_allclose(np.log(shape) - digamma(shape), np.log(m) - l, rtol=1e-12)
    assert_allclose(params.rates[0, 0], shape / m, rtol=1e-12)


def test_lognormal_map_means_by_hand() -> None:
    X = np.exp(np.array([[0.0], [2.0], [4.0]]))  # log x = 0, 2, 4: S = (1, 5)
    prior = GaussianPrior(mean=[1.0], shrinkage=0.5, dof=3.0, scale=1.0)
    family = LogNormal(prior=prior).bind(X, None)
    params = m_step(family, *soft_stats(family, X, RESP3))
    # shrinkage 0.5 pseudo-rows at log x = 1: (0.5 * 1 + S) / (0.5 + N)
    log_means = family.fitted_attributes(params)["log_means"][:, 0]
    assert_allclose(log_means, [(0.5 + 1.0) / 2.0, (0.5 + 5.0) / 2.0])


# -- (d) recovery of sampled mixtures --------------------------------------------------------


@dataclass
class RecoveryCase:
    family: Callable[[], Any]
    support: np.ndarray  # rows to bind the sampling family to
    params: Callable[[Any], Any]
    values: Callable[[Any, Any], np.ndarray]  # the parameters to compare
    rtol: float
    atol: float


def _perturb(values: Any, rng: np.random.Generator, scale: float = 0.15) -> Any:
    return type(values)(
        *(np.asarray(v) * np.exp(scale * rng.normal(size=np.shape(v))) for v in values)
    )


RECOVERY_CASES = {
    "poisson": RecoveryCase(
        Poisson,
        np.zeros((1, 2)),
        lambda f: f.default_params(3)._replace(
            rates=np.array([[1.0, 8.0], [6.0, 2.0], [15.0, 12.0]])
        ),
        lambda f, p: p.rates,
        0.1,
        0.0,
    ),
    "beta": RecoveryCase(
        BetaFamily,
        np.full((1, 2), 0.5),
        lambda f: f.default_params(2)._replace(
            a=np.array([[2.0, 9.0], [10.0, 1.5]]), b=np.array([[8.0, 2.0], [3.0, 1.0]])
        ),
        lambda f, p: np.concatenate([p.a, p.b], axis=1),
        0.15,
        0.0,
    ),
    "bernoulli": RecoveryCase(
        Bernoulli,
        np.zeros((1, 5)),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array([[0.9, 0.8, 0.1, 0.2, 0.5], [0.1, 0.3, 0.8, 0.9, 0.4]])
        ),
        lambda f, p: p.probabilities,
        0.0,
        0.05,
    ),
    "categorical": RecoveryCase(
        Categorical,
        np.array([[2.0, 3.0]]),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array(
                [[0.8, 0.1, 0.1, 0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.7, 0.05, 0.05, 0.1, 0.8]]
            )
        ),
        lambda f, p: p.probabilities,
        0.0,
        0.05,
    ),
    "multinomial": RecoveryCase(
        Multinomial,
        np.array([[5.0, 0.0, 0.0, 0.0], [0.0, 10.0, 10.0, 0.0], [20.0, 0.0, 0.0, 0.0]]),
        lambda f: f.default_params(2)._replace(
            probabilities=np.array([[0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.3, 0.5]])
        ),
        lambda f, p: p.probabilities,
        0.0,
        0.03,
    ),
    "exponential": RecoveryCase(
        Exponential,
        np.zeros((1, 2)),
        lambda f: f.default_params(2)._replace(rates=np.array([[1.0, 10.0], [8.0, 0.5]])),
        lambda f, p: p.rates,
        0.12,
        0.0,
    ),
    "gamma": RecoveryCase(
        Gamma,
        np.ones((1, 2)),
        lambda f: f.default_params(2)._replace(
            shapes=np.array([[2.0, 9.0], [10.0, 3.0]]), rates=np.array([[2.0, 1.0], [1.0, 2.0]])
        ),
        lambda f, p: np.concatenate([p.shapes, p.rates], axis=1),
        0.15,
        0.0,
    ),
    "lognormal": RecoveryCase(
        LogNormal,
        np.ones((1, 2)),
        lambda f: f.gaussian.params_from_covariances(
            np.array([[0.0, 1.0], [2.0, -1.0]]), np.array([[0.3, 0.5], [0.4, 0.2]])
        ),
        lambda f, p: np.concatenate([f.gaussian.user_means(p), p.covariances], axis=1),
        0.1,
        0.05,
    ),
}


@pytest.mark.parametrize("prior", [None, "auto"])
@pytest.mark.parametrize("name", sorted(RECOVERY_CASES))
def test_em_recovers_a_sampled_mixture(name: str, prior: str | None) -> None:
    case = RECOVERY_CASES[name]
    sampler = case.family().bind(case.support, None)
    truth = case.params(sampler)
    K = np.shape(truth[0])[0]
    weights = np.linspace(1.0, 1.5, K) / np.linspace(1.0, 1.5, K).sum()
    X, _ = sample_mixture(sampler, weights, truth, 4000, seed=8)
    family = case.family(prior=prior).bind(X, None)
    rng = np.random.default_rng(9)
    if name == "lognormal":
        start = family.gaussian.params_from_covariances(
            sampler.gaussian.user_means(truth) + 0.2 * rng.normal(size=(2, 2)),
            truth.covariances * 1.3,
        )
    else:
        start = _perturb(truth, rng)
        if name in ("categorical", "multinomial"):  # back onto the simplex
            start = type(truth)(_renormalize(family, start[0]))
        if name == "bernoulli":
            start = type(truth)(np.clip(start[0], 0.05, 0.95))
    _, result = fit(family, X, MixtureParams(np.full(K, 1.0 / K), start))
    assert_allclose(result.params.weights, weights, atol=0.03)
    assert_allclose(
        case.values(family, result.params.components),
        case.values(sampler, truth),
        rtol=case.rtol,
        atol=case.atol,
    )


def _renormalize(family: Any, p: np.ndarray) -> np.ndarray:
    if isinstance(family, Multinomial):
        return p / p.sum(axis=1, keepdims=True)
    offsets = np.concatenate([[0], np.cumsum(family.categories)])
    out = p.copy()
    for lo, hi in pairwise(offsets):
        out[:, lo:hi] /= out[:, lo:hi].sum(axis=1, keepdims=True)
    return out


def test_gamma_generalized_em_with_one_newton_step_never_decreases() -> None:
    sampler = Gamma().bind(np.ones((1, 1)), None)
    truth = sampler.default_params(2)._replace(
        shapes=np.array([[1.5], [20.0]]), rates=np.array([[1.0], [4.0]])
    )
    X, _ = sample_mixture(sampler, np.array([0.5, 0.5]), truth, 2000, seed=10)
    family = Gamma(max_m_step_iter=1).bind(X, None)
    start = truth._replace(shapes=np.array([[0.3], [60.0]]))
    _, result = fit(family, X, MixtureParams(np.array([0.5, 0.5]), start))
    assert np.all(np.diff(result.trace.objective) >= -1e-12)
    assert_allclose(result.params.components.shapes[:, 0], [1.5, 20.0], rtol=0.2)


# -- (e) the objective never decreases; MAP objective = log-likelihood + log prior ----------


def _scipy_log_prior(family: Any, params: Any) -> float:
    """The families' log prior densities, written with scipy.stats."""
    prior = family.prior
    if isinstance(family, Poisson | Exponential):
        return float(stats.gamma.logpdf(params.rates, prior.a, scale=1.0 / prior.b).sum())
    if isinstance(family, Bernoulli):
        return float(stats.beta.logpdf(params.probabilities, prior.a, prior.b).sum())
    if isinstance(family, Multinomial):
        alpha = prior.alpha(family.n_features)
        return sum(float(stats.dirichlet.logpdf(p, alpha)) for p in params.probabilities)
    if isinstance(family, Categorical):
        offsets = np.concatenate([[0], np.cumsum(family.categories)])
        alpha = np.broadcast_to(prior.concentration, (offsets[-1],))
        return sum(
            float(stats.dirichlet.logpdf(p[lo:hi] / p[lo:hi].sum(), alpha[lo:hi]))
            for p in params.probabilities
            for lo, hi in pairwise(offsets)
        )
    if isinstance(family, BetaFamily):  # <phi, eta> - nu A(eta), unnormalized
        d = family.n_features
        phi, nu = prior.phi, prior.pseudo_count
        a, b = params.a, params.b
        A = -stats.beta.logpdf(0.5, a, b) + (a + b - 2.0) * np.log(0.5)  # A = log B(a, b)
        return float(np.sum((a - 1) * phi[:d] + (b - 1) * phi[d:] - nu * A))
    if isinstance(family, Gamma):  # <phi, eta> - nu A(eta), unnormalized
        d = family.n_features
        phi, nu = prior.phi, prior.pseudo_count
        a, b = params.shapes, params.rates
        A = -stats.gamma.logpdf(1.0, a, scale=1.0 / b) - b  # log p(1) = -b - A(a, b)
        return float(np.sum(-b * phi[:d] + (a - 1) * phi[d:] - nu * A))
    raise AssertionError(type(family))


PRIORS = {
    "beta": ConjugatePrior(np.log([0.3, 0.5, 0.6, 0.4]), 1.0),
    "poisson": GammaPrior(2.0, 0.5),
    "bernoulli": BetaPrior(2.0, 3.0),
    "categorical": DirichletPrior(1.5),
    "multinomial": DirichletPrior(2.0),
    "exponential": GammaPrior(3.0, 1.0),
    "gamma": ConjugatePrior([2.0, 3.0, 0.2, 0.8], 1.0),
}


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_map_objective_is_loglik_plus_log_prior_and_never_decreases(name: str) -> None:
    case = DENSITY_CASES[name]
    X = case.data(np.random.default_rng(11))
    family = case.family(prior=PRIORS[name]).bind(X, None)
    start = MixtureParams(np.array([0.4, 0.6]), case.params(family))
    model, result = fit(family, X, start)
    assert np.all(np.diff(result.trace.objective) >= -1e-12 * np.abs(result.trace.objective[1:]))
    params = result.params
    with InMemoryEngine() as engine:
        s = engine.map_reduce(model.expectation(params), X)
    loglik = logsumexp(model.weighted_log_prob(params)(X), axis=1).sum()
    assert_allclose(s.loglik, loglik, rtol=1e-12)
    log_prior = _scipy_log_prior(family, params.components)
    assert_allclose(model.log_prior(params), log_prior, rtol=1e-10)
    assert_allclose(model.objective(params, s) * s.weight, loglik + log_prior, rtol=1e-12)


def test_lognormal_map_objective_adds_the_gaussian_log_prior() -> None:
    X = DENSITY_CASES["lognormal"].data(np.random.default_rng(12))
    family = LogNormal(prior="auto").bind(X, None)
    start = MixtureParams(np.array([0.5, 0.5]), DENSITY_CASES["lognormal"].params(family))
    model, result = fit(family, X, start)
    params = result.params
    with InMemoryEngine() as engine:
        s = engine.map_reduce(model.expectation(params), X)
    expected = family.gaussian.log_prior(params.components)
    assert expected != 0.0
    assert_allclose(model.objective(params, s) * s.weight, s.loglik + expected, rtol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 25),
    K=st.integers(1, 3),
    kind=st.sampled_from(["bernoulli", "categorical", "poisson", "exponential"]),
    with_prior=st.booleans(),
)
def test_em_never_decreases_on_random_small_data(
    seed: int, n: int, K: int, kind: str, with_prior: bool
) -> None:
    rng = np.random.default_rng(seed)
    data = {
        "bernoulli": lambda: (rng.random((n, 3)) < rng.random(3)).astype(float),
        "categorical": lambda: rng.integers(0, 3, size=(n, 2)).astype(float),
        "poisson": lambda: rng.poisson(rng.exponential(3.0, 2), size=(n, 2)).astype(float),
        "exponential": lambda: rng.exponential(1.0, size=(n, 2)) * (rng.random((n, 2)) < 0.8),
    }
    families = {
        "bernoulli": Bernoulli,
        "categorical": Categorical,
        "poisson": Poisson,
        "exponential": Exponential,
    }
    X = data[kind]()
    weights = rng.integers(1, 4, size=n).astype(float)
    family = families[kind](prior="auto" if with_prior else None).bind(X, weights)
    resp = rng.dirichlet(np.ones(K), size=n)
    model = Mixture(family)
    start_stats = model.statistics_from_resp(X, weights, resp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        start = model.m_step(
            MixtureParams(np.full(K, 1.0 / K), family.default_params(K)), start_stats
        )
        with InMemoryEngine() as engine:
            result = fit_em(
                model,
                engine,
                RowSource(X, weights),
                start,
                tol=1e-12,
                max_iter=30,
                monotonicity="raise",
            )
            s = engine.map_reduce(model.expectation(result.params), RowSource(X, weights))
    # the responsibilities of every row sum to one: the masses add up to the total weight
    assert_allclose(s.nk.sum(), weights.sum(), rtol=1e-12)
    assert np.isfinite(result.objective)


# -- (f) degenerate data fit without error ---------------------------------------------------


def test_all_zero_bernoulli_column() -> None:
    rng = np.random.default_rng(13)
    labels = np.repeat([0, 1], [120, 80])
    p = np.array([[0.9, 0.0, 0.9, 0.1, 0.8], [0.1, 0.0, 0.2, 0.9, 0.1]])
    X = (rng.random((200, 5)) < p[labels]).astype(float)  # column 1 is all zeros
    for prior in (None, "auto", BetaPrior(2.0, 2.0)):
        family = Bernoulli(prior=prior).bind(X, None)
        start = family.default_params(2)._replace(probabilities=np.clip(p, 0.2, 0.8))
        model, result = fit(family, X, MixtureParams(np.array([0.5, 0.5]), start))
        fitted = result.params.components.probabilities
        assert np.isfinite(model.weighted_log_prob(result.params)(X)).all()
        if isinstance(prior, BetaPrior):  # (a - 1 + 0) / (a + b - 2 + N_k) = 1 / (2 + N_k)
            nk = result.params.weights * 200
            assert_allclose(fitted[:, 1], 1.0 / (2.0 + nk), rtol=1e-6)
        else:  # the mode is 0 ('auto' has a = 1 for an all-zero column): held at eps
            assert_allclose(fitted[:, 1], EPS)


def test_clipping_gap_is_the_expected_log_likelihood_lost() -> None:
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    family = Bernoulli().bind(X, None)
    nk, sum_t = np.array([3.0]), X.sum(axis=0, keepdims=True)
    params = m_step(family, nk, sum_t)
    assert_allclose(params.probabilities, [[1.0 - EPS, 1.0 / 3.0]])
    # Q(1) = 0 for the first column; Q(1 - eps) = 3 log(1 - eps)
    assert_allclose(family.m_step_gap(params, nk, sum_t), -3.0 * np.log1p(-EPS), rtol=1e-6)
    X = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    exponential = Exponential().bind(X, None)  # S = 0 in column 1: unbounded likelihood
    sum_t = X.sum(axis=0, keepdims=True)
    params = m_step(exponential, nk, sum_t)
    assert_allclose(params.rates, [[0.5, 1e6]])  # 1e6 / the smallest positive value (none: 1)
    assert exponential.m_step_gap(params, nk, sum_t) == np.inf
    # a mean below the floor 1e-6: Q(1/m) - Q(1e6) = N (1e6 m - 1 - log(1e6 m))
    tiny = np.array([[6.0, 6e-10]])
    params = m_step(exponential, nk, tiny)
    v = 1e6 * 6e-10 / 3.0
    assert_allclose(exponential.m_step_gap(params, nk, tiny), 3.0 * (v - 1.0 - np.log(v)))


@pytest.mark.parametrize("prior", [None, "auto", DirichletPrior(2.0)])
def test_category_that_never_occurs(prior: Any) -> None:
    rng = np.random.default_rng(14)
    labels = np.repeat([0, 1], [90, 60])
    X = np.stack(
        [
            np.where(labels == 0, 0, rng.choice([0, 2], 150, p=[0.1, 0.9])),  # no 1, no 3
            np.where(rng.random(150) < 0.9, labels, 1 - labels),
        ],
        axis=1,
    ).astype(float)
    family = Categorical(n_categories=[4, 2], prior=prior).bind(X, None)
    start = family.default_params(2)._replace(
        probabilities=np.array([[0.7, 0.1, 0.1, 0.1, 0.8, 0.2], [0.2, 0.2, 0.4, 0.2, 0.2, 0.8]])
    )
    model, result = fit(family, X, MixtureParams(np.array([0.5, 0.5]), start))
    p = family.fitted_attributes(result.params.components)["probabilities"][0]
    assert np.isfinite(model.weighted_log_prob(result.params)(X)).all()
    if isinstance(prior, DirichletPrior):  # (alpha - 1 + 0) / (C (alpha - 1) + N_k)
        expected = 1.0 / (4.0 + 150 * result.params.weights)
        assert_allclose(p[:, [1, 3]], np.stack([expected, expected], axis=1), rtol=1e-6)
    else:  # codes 1 and 3 never occur ('auto': alpha = 1 for them): held at the floor
        assert np.all(p[:, [1, 3]] <= 1e-299)
    assert_allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize("prior", [None, "auto", GammaPrior(2.0, 1.0)])
def test_all_zero_poisson_and_exponential_columns(prior: Any) -> None:
    rng = np.random.default_rng(15)
    X = np.stack([rng.poisson(2.0, 100), np.zeros(100)], axis=1).astype(float)
    X[:50, 0] += 8.0
    start = np.array([[8.0, 1.0], [2.0, 1.0]])
    for cls in (Poisson, Exponential):
        if cls is Exponential and prior is None:
            continue  # unbounded likelihood without a prior (gap inf), tested above
        family = cls(prior=prior).bind(X, None)
        params = MixtureParams(np.array([0.5, 0.5]), family.default_params(2)._replace(rates=start))
        model, result = fit(family, X, params)
        rates = result.params.components.rates
        assert np.isfinite(model.weighted_log_prob(result.params)(X)).all()
        nk = result.params.weights * 100
        if cls is Poisson:  # (a - 1 + 0) / (b + N_k), 0 held at the floor
            expected = 1.0 / (1.0 + nk) if isinstance(prior, GammaPrior) else np.full(2, 1e-300)
        else:  # (a - 1 + N_k) / (b + 0); 'auto': a = 1.01, b = 0.01 for an all-zero column
            a, b = (2.0, 1.0) if isinstance(prior, GammaPrior) else (1.01, 0.01)
            expected = (a - 1.0 + nk) / b
        assert_allclose(rates[:, 1], expected, rtol=1e-6)


def test_multinomial_category_that_never_occurs_and_empty_rows() -> None:
    rng = np.random.default_rng(16)
    X = np.vstack(
        [
            rng.multinomial(10, [0.8, 0.2, 0.0], size=60),
            rng.multinomial(10, [0.2, 0.8, 0.0], size=40),
        ]
    ).astype(float)  # category 2 never occurs
    X[:5] = 0.0  # rows with no counts at all
    for prior in (None, "auto", DirichletPrior(1.5)):
        family = Multinomial(prior).bind(X, None)
        start = family.default_params(2)._replace(
            probabilities=np.array([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
        )
        model, result = fit(family, X, MixtureParams(np.array([0.5, 0.5]), start))
        assert np.isfinite(result.params.components.probabilities).all()
        assert np.isfinite(model.weighted_log_prob(result.params)(X)).all()


def test_multinomial_component_with_only_empty_rows_keeps_its_probabilities() -> None:
    family = Multinomial().bind(np.array([[0.0, 0.0], [1.0, 2.0]]), None)
    old = family.default_params(2)._replace(probabilities=np.array([[0.3, 0.7], [0.5, 0.5]]))
    new = family.m_step(
        old, np.array([1.0, 1.0]), np.array([[0.0, 0.0], [1.0, 2.0]]), np.zeros(0), 2.0
    )
    assert_allclose(new.probabilities, [[0.3, 0.7], [1 / 3, 2 / 3]])


def test_gamma_component_on_equal_values_stops_at_the_ceiling_and_is_reported() -> None:
    # the shape at the ceiling is the maximizer of Q over the shapes <= ceiling (a set
    # fixed for the fit): no gap, and the component is reported as degenerate
    X = np.array([[2.0], [2.0], [2.0]])
    family = Gamma().bind(X, None)
    nk, sum_t = hard_stats(family, X, np.zeros(3, dtype=int), 1)
    params = m_step(family, nk, sum_t)
    assert params.shapes[0, 0] == 1e10
    assert_allclose(params.shapes / params.rates, [[2.0]])
    assert family.m_step_gap(params, nk, sum_t) == 0.0
    assert family.degenerate(params).tolist() == [True]


# -- (g) validation ---------------------------------------------------------------------------


def test_poisson_rejects_negative_counts() -> None:
    family = Poisson().bind(np.zeros((2, 2)), None)
    with pytest.raises(InputError, match=r"b has a negative count \(-1\) in row 1; Poisson"):
        family.check(np.array([[0.0, 1.0], [2.0, -1.0]]), ["a", "b"])


def test_bernoulli_rejects_non_binary_values() -> None:
    message = r"column 1 has the value 0.5 in row 1; Bernoulli columns must be exactly 0 or 1\. "
    X = np.array([[0.0, 1.0], [1.0, 0.5]])
    for family in (Bernoulli(), Bernoulli(prior="auto").bind(X, None)):  # unbound, bound
        with pytest.raises(InputError, match=message + r"Threshold the column first"):
            family.check(X, [])
    family = Bernoulli().bind(np.zeros((1, 2)), None)
    family.check(np.array([[0.0, np.nan]]), ["x1", "x2"])  # NaN: a missing value
    with pytest.raises(InputError, match=r"x2 has the value 0.5 in row 1"):
        family.check(np.array([[0.0, np.nan], [1.0, 0.5]]), ["x1", "x2"])
    with pytest.raises(InputError, match=r"BetaPrior a has 3 values but the data has 2 columns"):
        Bernoulli(BetaPrior([2.0, 2.0, 2.0], 2.0)).bind(np.zeros((1, 2)), None)


def test_categorical_rejects_bad_codes() -> None:
    with pytest.raises(
        InputError,
        match=r"column 0 has the category code 1.5 in row 1, which is not an integer.*"
        r"OrdinalEncoder",
    ):
        Categorical().check(np.array([[0.0], [1.5]]), [])
    X = np.array([[-1.0], [1.0]])
    with pytest.raises(InputError, match=r"column 0 has the negative category code -1 in row 0"):
        Categorical(prior="auto").bind(X, None).check(X, [])
    family = Categorical().bind(np.array([[0.0, 1.0], [2.0, 0.0]]), None)
    with pytest.raises(
        InputError,
        match=r"colour has the category code 3 in row 1, but the family has 3 categories there "
        r"\(codes 0\.\.2\): a category not seen in training",
    ):
        family.check(np.array([[1.0, 1.0], [3.0, 0.0]]), ["colour", "size"])
    with pytest.raises(InputError, match=r"size has the category code 0.5 in row 0"):
        family.check(np.array([[1.0, 0.5]]), ["colour", "size"])
    with pytest.raises(InputError, match=r"fitted on 2 columns, got 1"):
        family.check(np.array([[1.0]]), ["colour"])


def test_categorical_rejects_bad_n_categories_and_priors() -> None:
    X = np.array([[0.0, 4.0], [1.0, 0.0]])
    with pytest.raises(
        InputError,
        match=r"n_categories for column 1 is 3, but the data has the code 4 in row 0; pass "
        r"n_categories of at least 5",
    ):
        Categorical(n_categories=3).bind(X, None)
    with pytest.raises(InputError, match=r"n_categories has 3 entries but the data has 2 columns"):
        Categorical(n_categories=[2, 5, 3]).bind(X, None)
    for bad in (0, 2.5, "3", [2, 0], True):
        with pytest.raises(InputError, match=r"n_categories must be None, a positive integer"):
            Categorical(n_categories=bad)
    with pytest.raises(
        InputError, match=r"DirichletPrior concentration has 3 values but the columns have \[2, 5\]"
    ):
        Categorical(prior=DirichletPrior([2.0, 2.0, 2.0])).bind(X, None)
    with pytest.raises(InputError, match=r"column 0 has codes up to 1e\+06.*Recode the column"):
        Categorical().bind(np.array([[1e6]]), None)


def test_categorical_priors_given_per_category() -> None:
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    same = Categorical(prior=DirichletPrior([2.0, 3.0])).bind(X, None)
    assert_allclose(same._alpha(), [2.0, 3.0, 2.0, 3.0])
    packed = Categorical(n_categories=[2, 3], prior=DirichletPrior([2, 3, 4, 5, 6])).bind(X, None)
    assert_allclose(packed._alpha(), [2, 3, 4, 5, 6])


def test_multinomial_exponential_gamma_lognormal_reject_values_outside_their_support() -> None:
    cases = [
        (
            Multinomial(),
            np.array([[1.0, 2.0], [0.0, -1.0]]),
            r"column 1 has the value -1 in row 1; Multinomial columns must be non-negative "
            r"integer counts",
        ),
        (
            Multinomial(),
            np.array([[1.0, 2.5]]),
            r"column 1 has the value 2.5 in row 0; Multinomial",
        ),
        (
            Exponential(),
            np.array([[1.0], [-0.5]]),
            r"column 0 has the value -0.5 in row 1; Exponential columns must be non-negative",
        ),
        (
            Gamma(),
            np.array([[1.0], [0.0]]),
            r"column 0 has the value 0 in row 1; Gamma columns must be positive",
        ),
        (
            Gamma(),
            np.array([[-2.0]]),
            r"column 0 has the value -2 in row 0; Gamma columns must be positive",
        ),
        (
            LogNormal(),
            np.array([[1.0, 0.0]]),
            r"column 1 has the value 0 in row 0; LogNormal columns must be positive",
        ),
    ]
    for family, X, message in cases:
        with pytest.raises(InputError, match=message):
            family.check(X, [])
        # bind leaves the values to check(), which names the columns: no error, no warning
        for prior in (None, "auto"):
            bound = type(family)(prior=prior) if not hasattr(family, "gaussian") else family
            with pytest.raises(InputError, match=message):
                bound.bind(X, None).check(X, [])
    bound = LogNormal().bind(np.ones((2, 2)), None)
    with pytest.raises(InputError, match=r"The LogNormal family was fitted on 2 columns, got 3"):
        bound.check(np.ones((1, 3)), [])


def test_gamma_rejects_bad_priors_and_options() -> None:
    X = np.ones((2, 2))
    with pytest.raises(InputError, match=r"needs 2 \* n_features = 4 pseudo_observations"):
        Gamma(ConjugatePrior([1.0, 0.0], 1.0)).bind(X, None)
    with pytest.raises(
        InputError,
        match=r"ConjugatePrior is not proper for column 1.*log\(mean x\) > mean\(log x\)",
    ):
        Gamma(ConjugatePrior([2.0, 1.0, 0.0, 0.5], 1.0)).bind(X, None)
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match=r"max_m_step_iter must be a positive integer or None"):
            Gamma(max_m_step_iter=bad)


@pytest.mark.parametrize(
    "make, wanted",
    [
        (lambda: Poisson(prior=BetaPrior()), "GammaPrior"),
        (lambda: Bernoulli(GammaPrior()), "BetaPrior"),
        (lambda: Categorical(prior=BetaPrior()), "DirichletPrior"),
        (lambda: Multinomial(GammaPrior()), "DirichletPrior"),
        (lambda: Exponential(DirichletPrior()), "GammaPrior"),
        (lambda: Gamma(GammaPrior()), "ConjugatePrior"),
        (lambda: LogNormal(prior=BetaPrior()), "GaussianPrior"),
    ],
)
def test_families_reject_priors_of_the_wrong_type(make: Callable[[], Any], wanted: str) -> None:
    with pytest.raises(
        InputError, match=rf"family takes a prior of type {wanted} \(or None, or 'auto'\), got"
    ):
        make()


# -- (h) parameter counts and sampling moments ----------------------------------------------


def test_n_parameters() -> None:
    X = np.array([[0.0, 2.0, 1.0], [1.0, 0.0, 3.0]])
    assert Poisson().bind(X, None).n_parameters(4) == 12
    assert Bernoulli().bind(X[:, :1], None).n_parameters(4) == 4
    assert Categorical().bind(X, None).n_parameters(4) == 4 * (1 + 2 + 3)
    assert Categorical(n_categories=[5, 3, 4]).bind(X, None).n_parameters(2) == 2 * (4 + 2 + 3)
    assert Multinomial().bind(X, None).n_parameters(4) == 4 * 2
    assert Exponential().bind(X, None).n_parameters(4) == 12
    assert Gamma().bind(X + 1, None).n_parameters(4) == 24
    assert LogNormal().bind(X + 1, None).n_parameters(4) == 4 * (3 + 3)
    assert LogNormal("full").bind(X + 1, None).n_parameters(4) == 4 * (3 + 6)


def test_sampling_moments() -> None:
    rng = np.random.default_rng(17)
    n = 40000

    def draw(family: Any, params: Any) -> np.ndarray:
        return family.sample(params, 1, n, rng)

    poisson = Poisson().bind(np.zeros((1, 2)), None)
    rates = np.array([[1.0, 1.0], [3.0, 0.5]])
    x = draw(poisson, poisson.default_params(2)._replace(rates=rates))
    assert_allclose(x.mean(axis=0), rates[1], rtol=0.03)
    assert_allclose(x.var(axis=0), rates[1], rtol=0.05)

    bernoulli = Bernoulli().bind(np.zeros((1, 2)), None)
    p = np.array([[0.5, 0.5], [0.2, 0.9]])
    x = draw(bernoulli, bernoulli.default_params(2)._replace(probabilities=p))
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert_allclose(x.mean(axis=0), p[1], atol=0.01)

    categorical = Categorical().bind(np.array([[2.0, 1.0]]), None)
    packed = np.array([[1 / 3] * 3 + [0.5] * 2, [0.1, 0.6, 0.3, 0.8, 0.2]])
    x = draw(categorical, categorical.default_params(2)._replace(probabilities=packed))
    assert_allclose(np.bincount(x[:, 0].astype(int)) / n, [0.1, 0.6, 0.3], atol=0.01)
    assert_allclose(np.bincount(x[:, 1].astype(int)) / n, [0.8, 0.2], atol=0.01)

    multinomial = Multinomial().bind(np.array([[10.0, 0.0, 0.0], [0.0, 20.0, 10.0]]), None)
    p = np.array([[1 / 3] * 3, [0.2, 0.3, 0.5]])
    x = draw(multinomial, multinomial.default_params(2)._replace(probabilities=p))
    assert set(np.unique(x.sum(axis=1))) == {10.0, 30.0}  # the training rows' totals
    assert_allclose(x.mean(axis=0), 20.0 * p[1], rtol=0.03)

    exponential = Exponential().bind(np.zeros((1, 2)), None)
    rates = np.array([[1.0, 1.0], [0.5, 4.0]])
    x = draw(exponential, exponential.default_params(2)._replace(rates=rates))
    assert_allclose(x.mean(axis=0), 1.0 / rates[1], rtol=0.03)

    gamma = Gamma().bind(np.ones((1, 2)), None)
    shapes, rates = np.array([[1.0, 1.0], [3.0, 0.5]]), np.array([[1.0, 1.0], [2.0, 0.25]])
    x = draw(gamma, gamma.default_params(2)._replace(shapes=shapes, rates=rates))
    assert_allclose(x.mean(axis=0), shapes[1] / rates[1], rtol=0.03)
    assert_allclose(x.var(axis=0), shapes[1] / rates[1] ** 2, rtol=0.06)

    lognormal = LogNormal().bind(np.ones((1, 2)), None)
    means, variances = np.array([[0.0, 0.0], [1.0, -2.0]]), np.array([[1.0, 1.0], [0.25, 0.5]])
    params = lognormal.gaussian.params_from_covariances(means, variances)
    x = draw(lognormal, params)
    assert_allclose(np.log(x).mean(axis=0), means[1], atol=0.02)
    assert_allclose(np.log(x).var(axis=0), variances[1], rtol=0.03)
    assert_allclose(x.mean(axis=0), np.exp(means[1] + variances[1] / 2), rtol=0.03)


def test_fitted_attributes() -> None:
    X = np.array([[0.0, 2.0], [1.0, 0.0]])
    categorical = Categorical().bind(X, None)
    attributes = categorical.fitted_attributes(categorical.default_params(3))
    assert [p.shape for p in attributes["probabilities"]] == [(3, 2), (3, 3)]
    lognormal = LogNormal().bind(X + 1.0, None)
    assert sorted(lognormal.fitted_attributes(lognormal.default_params(2))) == [
        "log_covariances",
        "log_means",
        "log_precisions",
        "log_precisions_cholesky",
    ]
    gamma = Gamma().bind(X + 1.0, None)
    assert sorted(gamma.fitted_attributes(gamma.default_params(2))) == ["rates", "shapes"]


def test_auto_priors_from_weighted_rows_equal_repeated_rows() -> None:
    X = np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    weights = np.array([3.0, 1.0, 2.0])
    repeated = np.repeat(X, weights.astype(int), axis=0)
    for make in (Categorical, Multinomial, Poisson, Exponential):
        a = make(prior="auto").bind(X, weights).prior
        b = make(prior="auto").bind(repeated, None).prior
        for field in ("concentration", "shape", "rate"):
            if hasattr(a, field):
                assert_allclose(getattr(a, field), getattr(b, field))
    a = Bernoulli("auto").bind(np.minimum(X, 1.0), weights).prior
    b = Bernoulli("auto").bind(np.minimum(repeated, 1.0), None).prior
    assert_allclose([a.a, a.b], [b.a, b.b])


# -- the families as blocks of a product (mixed-type tables), in float64 and float32 ----------


def _mixed_table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < 0.4).astype(int)
    X = np.column_stack(
        [
            rng.random(n) < np.where(z == 1, 0.8, 0.2),  # Bernoulli
            np.where(z == 1, rng.choice(3, n, p=[0.7, 0.2, 0.1]), rng.choice(3, n)),  # Categorical
            rng.choice(4, n),  # Categorical, uninformative
            rng.gamma(np.where(z == 1, 2.0, 6.0), 1.0),  # Gamma
            np.vstack([rng.multinomial(12, [0.6, 0.3, 0.1] if k else [0.2, 0.3, 0.5]) for k in z]),
            rng.exponential(np.where(z == 1, 1.0, 3.0)) * (rng.random(n) < 0.9),  # Exponential
            np.exp(rng.normal(np.where(z == 1, 0.0, 1.5), 0.5)),  # LogNormal
            rng.beta(np.where(z == 1, 2.0, 8.0), 4.0),  # Beta
        ]
    ).astype(float)
    return X, z


def _mixed_family() -> Any:
    from emkit.families.product import Product

    return Product(
        {
            "flag": ([0], Bernoulli(prior="auto")),
            "codes": ([1, 2], Categorical(prior="auto")),
            "size": ([3], Gamma(prior="auto")),
            "words": ([4, 5, 6], Multinomial(prior="auto")),
            "wait": ([7], Exponential(prior="auto")),
            "price": ([8], LogNormal(prior="auto")),
            "share": ([9], BetaFamily(prior="auto")),
        }
    )


def test_families_as_blocks_of_a_product() -> None:
    X, z = _mixed_table(1500, seed=18)
    names = [f"x{j}" for j in range(X.shape[1])]
    family = _mixed_family().bind(X, None)
    family.check(X, names)
    bad = X.copy()
    bad[3, 2] = 1.5
    with pytest.raises(InputError, match=r"x2 has the category code 1.5 in row 3"):
        family.check(bad, names)
    bad = X.copy()
    bad[4, 8] = -1.0
    with pytest.raises(InputError, match=r"x8 has the value -1 in row 4; LogNormal"):
        family.check(bad, names)
    fits = {}
    for dtype in (np.float64, np.float32):
        model = Mixture(family, dtype=dtype)
        s = model.statistics_from_resp(X, None, np.eye(2)[z])
        start = model.m_step(MixtureParams(np.full(2, 0.5), family.default_params(2)), s)
        with InMemoryEngine(chunk_size=500) as engine:
            fits[dtype] = fit_em(
                model,
                engine,
                RowSource(X),
                start,
                tol=1e-8,
                max_iter=500,
                monotonicity="raise",
                dtype=dtype,
            )
        assert fits[dtype].converged
        labels = model.weighted_log_prob(fits[dtype].params)(X).argmax(axis=1)
        assert np.mean(labels == z) > 0.95
    assert_allclose(fits[np.float32].objective, fits[np.float64].objective, rtol=1e-4)
    assert_allclose(fits[np.float32].params.weights, fits[np.float64].params.weights, atol=1e-3)


def test_float32_runs_in_float64_where_the_expanded_form_loses_precision() -> None:
    rng = np.random.default_rng(19)
    z = np.repeat([0, 1], [600, 400])
    cases = [  # large shapes: terms ~ alpha |log x|; large counts: x log p and log(n!)
        (Gamma(), rng.gamma(np.where(z == 1, 1000.0, 800.0), 1.0)[:, None]),
        (
            Multinomial(),
            np.vstack(
                [rng.multinomial(5000, [0.5, 0.3, 0.2] if k else [0.3, 0.3, 0.4]) for k in z]
            ).astype(float),
        ),
    ]
    for family, X in cases:
        family = family.bind(X, None)
        model = Mixture(family, dtype=np.float32)
        s = model.statistics_from_resp(X, None, np.eye(2)[z])
        start = model.m_step(MixtureParams(np.full(2, 0.5), family.default_params(2)), s)
        assert family.natural(start.components, np.float32).exact_form
        assert not family.natural(start.components, np.float64).exact_form
        with InMemoryEngine() as engine:
            result = fit_em(
                model,
                engine,
                RowSource(X),
                start,
                tol=1e-10,
                max_iter=200,
                monotonicity="raise",
                dtype=np.float32,
            )
        assert result.converged
        assert_allclose(
            log_density(family, result.params.components, X, dtype=np.float32),
            log_density(family, result.params.components, X),
            rtol=1e-12,
        )
    small = Gamma().bind(rng.gamma(2.0, 1.0, (50, 1)), None)
    params = small.default_params(1)._replace(shapes=np.array([[2.0]]))
    assert not small.natural(params, np.float32).exact_form


# -- Beta (on proportions) ------------------------------------------------------------------


def test_beta_m_step_matches_scipy_fit_and_solves_over_the_range() -> None:
    rng = np.random.default_rng(20)
    labels = np.repeat([0, 1], [150, 250])
    X = np.vstack([rng.beta(0.4, 2.0, size=(150, 2)), rng.beta(30.0, 12.0, size=(250, 2))])
    family = BetaFamily().bind(X, None)
    stats_ = hard_stats(family, X, labels, 2)
    params = m_step(family, *stats_)
    for k in range(2):
        for j in range(2):
            a, b, _, _ = stats.beta.fit(X[labels == k, j], floc=0, fscale=1)
            assert_allclose([params.a[k, j], params.b[k, j]], [a, b], rtol=1e-5)
    assert family.m_step_gap(params, *stats_) == 0.0
    a = np.array([0.01, 0.05, 0.3, 1.0, 2.0, 50.0, 1e3, 0.02, 5e4])
    b = np.array([0.02, 3.0, 0.3, 1.0, 7.0, 1.0, 2e3, 1e4, 0.5])
    l1, l2 = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    got_a, got_b, converged = _solve_beta(l1, l2, 50)
    assert converged.all()
    assert_allclose(got_a, a, rtol=1e-8)
    assert_allclose(got_b, b, rtol=1e-8)


def test_beta_map_update_by_hand() -> None:
    X = np.array([[0.5], [0.25], [0.8]])
    # two pseudo-rows with sum log x = 2 log 0.4, sum log(1 - x) = 2 log 0.5
    phi = np.array([2 * np.log(0.4), 2 * np.log(0.5)])
    family = BetaFamily(ConjugatePrior(phi, 2.0)).bind(X, None)
    params = m_step(family, *soft_stats(family, X, RESP3))
    # component 0: S = (log 0.5 + log(0.25) / 2, log 0.5 + log(0.75) / 2); N = 1.5
    l1 = (2 * np.log(0.4) + np.log(0.5) + 0.5 * np.log(0.25)) / 3.5
    l2 = (2 * np.log(0.5) + np.log(0.5) + 0.5 * np.log(0.75)) / 3.5
    assert_allclose([l1, l2], [-0.9196788071, -0.6352235937], rtol=1e-9)
    a, b = params.a[0, 0], params.b[0, 0]
    assert_allclose(digamma(a) - digamma(a + b), l1, rtol=1e-12)
    assert_allclose(digamma(b) - digamma(a + b), l2, rtol=1e-12)


def test_beta_generalized_em_and_degenerate_columns() -> None:
    sampler = BetaFamily().bind(np.full((1, 1), 0.5), None)
    truth = sampler.default_params(2)._replace(
        a=np.array([[2.0], [30.0]]), b=np.array([[9.0], [10.0]])
    )
    X, _ = sample_mixture(sampler, np.array([0.5, 0.5]), truth, 2000, seed=21)
    family = BetaFamily(max_m_step_iter=1).bind(X, None)
    start = truth._replace(a=np.array([[1.0], [60.0]]))
    _, result = fit(family, X, MixtureParams(np.array([0.5, 0.5]), start))
    assert np.all(np.diff(result.trace.objective) >= -1e-12)
    assert_allclose(result.params.components.a[:, 0], [2.0, 30.0], rtol=0.2)
    # every row equal: a spike, held at a + b = 1e10 with an infinite gap
    equal = np.full((3, 1), 0.25)
    family = BetaFamily().bind(equal, None)
    nk, sum_t = hard_stats(family, equal, np.zeros(3, dtype=int), 1)
    params = m_step(family, nk, sum_t)
    assert_allclose(params.a + params.b, [[1e10]])
    assert_allclose(params.a / (params.a + params.b), [[0.25]])
    assert family.m_step_gap(params, nk, sum_t) == np.inf


def test_beta_validation_counts_and_moments() -> None:
    for value in (0.0, 1.0, 1.5, -0.1):
        X = np.array([[0.5, 0.2], [0.3, value]])
        with pytest.raises(
            InputError,
            match=rf"p has the value {value:g} in row 1; Beta columns must be strictly between "
            r"0 and 1",
        ):
            BetaFamily(prior="auto").bind(X, None).check(X, ["q", "p"])
    with pytest.raises(InputError, match=r"needs 2 \* n_features = 2 pseudo_observations"):
        BetaFamily(ConjugatePrior([0.0], 1.0)).bind(np.full((1, 1), 0.5), None)
    with pytest.raises(InputError, match=r"ConjugatePrior is not proper for column 0"):
        BetaFamily(ConjugatePrior([-0.1, -0.1], 1.0)).bind(np.full((1, 1), 0.5), None)
    with pytest.raises(InputError, match=r"takes a prior of type ConjugatePrior"):
        BetaFamily(BetaPrior())
    family = BetaFamily().bind(np.full((1, 3), 0.5), None)
    assert family.n_parameters(4) == 24
    params = family.default_params(2)._replace(
        a=np.array([[1.0] * 3, [2.0, 0.5, 20.0]]), b=np.array([[1.0] * 3, [5.0, 0.5, 10.0]])
    )
    x = family.sample(params, 1, 40000, np.random.default_rng(22))
    mean = params.a[1] / (params.a[1] + params.b[1])
    assert_allclose(x.mean(axis=0), mean, rtol=0.02)
    assert family.fitted_attributes(params).keys() == {"a", "b"}
