"""Priors are objects that update: posterior, mode, mean, expected_natural and kl of the
conjugate priors, checked against scipy.stats densities, numerical integration and a
brute-force Bayes update on a grid; and the MAP M-steps that now go through them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from emkit.families import (
    Bernoulli,
    BetaPrior,
    Categorical,
    ConjugatePrior,
    DirichletPrior,
    Exponential,
    GammaPrior,
    Poisson,
)
from emkit.families.priors import UpdatingPrior


def _quad(f, lo, hi):
    return integrate.quad(f, lo, hi, limit=200, epsabs=1e-12, epsrel=1e-10)[0]


# -- kl and expected_natural against scipy.stats + numerical integration -----------------


@pytest.mark.parametrize(("a", "b", "a0", "b0"), [(3.0, 2.0, 1.5, 0.5), (20.0, 4.0, 2.0, 3.0)])
def test_gamma_kl_and_expectations_match_integrals(a, b, a0, b0):
    q, p = stats.gamma(a, scale=1 / b), stats.gamma(a0, scale=1 / b0)
    kl = _quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), 0, np.inf)
    post = GammaPrior(a, b)
    np.testing.assert_allclose(post.kl(GammaPrior(a0, b0)), kl, rtol=1e-8)
    e_log, e_rate = post.expected_natural()
    np.testing.assert_allclose(e_log, _quad(lambda x: np.log(x) * q.pdf(x), 0, np.inf), rtol=1e-8)
    np.testing.assert_allclose(e_rate, q.mean(), rtol=1e-12)
    np.testing.assert_allclose(post.mean(), q.mean(), rtol=1e-12)
    assert post.kl(post) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("a", "b", "a0", "b0"), [(3.0, 2.0, 1.0, 1.0), (7.5, 1.2, 2.0, 4.0)])
def test_beta_kl_and_expectations_match_integrals(a, b, a0, b0):
    q, p = stats.beta(a, b), stats.beta(a0, b0)
    kl = _quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), 0, 1)
    post = BetaPrior(a, b)
    np.testing.assert_allclose(post.kl(BetaPrior(a0, b0)), kl, rtol=1e-8)
    e_logit, e_a = post.expected_natural()
    logit = _quad(lambda x: (np.log(x) - np.log1p(-x)) * q.pdf(x), 0, 1)
    np.testing.assert_allclose(e_logit, logit, rtol=1e-8)
    np.testing.assert_allclose(e_a, _quad(lambda x: -np.log1p(-x) * q.pdf(x), 0, 1), rtol=1e-8)
    np.testing.assert_allclose(post.mean(), q.mean(), rtol=1e-12)


def test_dirichlet_of_two_categories_is_a_beta():
    post, prior = DirichletPrior([3.0, 2.0]), DirichletPrior([1.5, 4.0])
    np.testing.assert_allclose(post.kl(prior), BetaPrior(3.0, 2.0).kl(BetaPrior(1.5, 4.0)))
    e_log, e_a = post.expected_natural()
    q = stats.beta(3.0, 2.0)
    np.testing.assert_allclose(e_log[0], _quad(lambda x: np.log(x) * q.pdf(x), 0, 1), rtol=1e-8)
    np.testing.assert_allclose(e_log[1], _quad(lambda x: np.log1p(-x) * q.pdf(x), 0, 1), rtol=1e-8)
    assert e_a == 0.0


def test_dirichlet_kl_matches_monte_carlo_and_segments_add():
    alpha, alpha0 = np.array([2.0, 5.0, 1.5]), np.array([1.0, 1.0, 3.0])
    rng = np.random.default_rng(0)
    draws = rng.dirichlet(alpha, 400_000)
    mc = np.mean(stats.dirichlet(alpha).logpdf(draws.T) - stats.dirichlet(alpha0).logpdf(draws.T))
    kl = DirichletPrior(alpha).kl(DirichletPrior(alpha0))
    assert kl == pytest.approx(mc, abs=5e-3)
    # two columns packed: the KL of the pair is the sum of the columns'
    offsets = np.array([0, 3, 5])
    packed = DirichletPrior.packed(np.concatenate([alpha, [2.0, 3.0]])[None, :], offsets)
    packed0 = DirichletPrior.packed(np.concatenate([alpha0, [1.0, 1.0]]), offsets)
    second = DirichletPrior([2.0, 3.0]).kl(DirichletPrior([1.0, 1.0]))
    np.testing.assert_allclose(packed.kl(packed0), [kl + second], rtol=1e-12)
    e_log, _ = packed.expected_natural()
    np.testing.assert_allclose(e_log[0, 3:], DirichletPrior([2.0, 3.0]).expected_natural()[0])


def test_kl_is_one_value_per_component():
    prior = GammaPrior(shape=[2.0, 3.0], rate=1.0)
    post = prior.posterior((np.array([[1.0, 2.0], [5.0, 0.0], [0.0, 0.0]]), np.ones((3, 1))))
    kl = post.kl(prior)
    assert kl.shape == (3,)
    expected = [GammaPrior(post.a[k], post.b[k]).kl(prior).sum() for k in range(3)]
    np.testing.assert_allclose(kl, expected, rtol=1e-14)
    assert all(kl > 0)


# -- posterior against a brute-force Bayes update on a grid -----------------------------


def _grid_posterior(grid, log_prior, log_lik):
    log_post = log_prior + log_lik
    density = np.exp(log_post - log_post.max())
    return density / np.trapezoid(density, grid)


def test_gamma_posterior_is_bayes_rule_for_poisson_and_exponential():
    rng = np.random.default_rng(1)
    x, w = rng.poisson(3.0, 12).astype(float), rng.uniform(0.2, 2.0, 12)
    prior = GammaPrior(2.0, 0.5)
    grid = np.linspace(1e-3, 12.0, 40001)
    log_lik = (w[:, None] * stats.poisson.logpmf(x[:, None], grid)).sum(0)
    brute = _grid_posterior(grid, stats.gamma.logpdf(grid, 2.0, scale=2.0), log_lik)
    post = (
        Poisson(prior=prior)
        .bind(x[:, None], None)
        ._posterior(np.array([[w.sum()]]), np.array([[w @ x]]))
    )
    exact = stats.gamma.pdf(grid, post.a[0, 0], scale=1 / post.b[0, 0])
    np.testing.assert_allclose(brute, exact, atol=1e-6 * exact.max())
    assert post.mode()[0, 0] == pytest.approx(grid[np.argmax(brute)], abs=1e-3)

    y = rng.exponential(0.5, 9)
    log_lik = (stats.expon.logpdf(y[:, None], scale=1 / grid)).sum(0)
    brute = _grid_posterior(grid, stats.gamma.logpdf(grid, 2.0, scale=2.0), log_lik)
    post = (
        Exponential(prior=prior)
        .bind(y[:, None], None)
        ._posterior(np.array([[9.0]]), np.array([[y.sum()]]))
    )
    exact = stats.gamma.pdf(grid, post.a[0, 0], scale=1 / post.b[0, 0])
    np.testing.assert_allclose(brute, exact, atol=1e-6 * exact.max())


def test_beta_and_dirichlet_posteriors_are_bayes_rule():
    rng = np.random.default_rng(2)
    x = (rng.random(15) < 0.3).astype(float)
    grid = np.linspace(1e-6, 1 - 1e-6, 40001)
    log_lik = x.sum() * np.log(grid) + (15 - x.sum()) * np.log1p(-grid)
    brute = _grid_posterior(grid, stats.beta.logpdf(grid, 2.0, 3.0), log_lik)
    family = Bernoulli(prior=BetaPrior(2.0, 3.0)).bind(x[:, None], None)
    post = family._posterior(np.array([[15.0]]), np.array([[x.sum()]]))
    exact = stats.beta.pdf(grid, post.a[0, 0], post.b[0, 0])
    np.testing.assert_allclose(brute, exact, atol=1e-6 * exact.max())
    # a Categorical column of 2 categories: p_1 has the same Beta posterior
    codes = x[:, None]
    cat = Categorical(prior=DirichletPrior([3.0, 2.0])).bind(codes, None)
    sums = np.array([[15.0 - x.sum(), x.sum()]])
    dpost = cat._posterior(np.array([[15.0]]), sums)
    np.testing.assert_allclose(dpost.concentration[0], [post.b[0, 0], post.a[0, 0]])


# -- the MAP M-step is posterior(stats).mode() ------------------------------------------


def test_map_m_steps_are_the_posterior_modes():
    nk = np.array([4.0, 0.5])
    sums = np.array([[6.0, 1.0], [0.25, 0.0]])
    X = np.ones((2, 2))
    prior = GammaPrior([2.0, 1.5], 0.5)
    rates = Poisson(prior=prior).bind(X, None)._maximize(nk, sums).rates
    np.testing.assert_array_equal(rates, (prior.a - 1 + sums) / (prior.b + nk[:, None]))
    rates = Exponential(prior=prior).bind(X, None)._maximize(nk, sums).rates
    np.testing.assert_allclose(rates, (prior.a - 1 + nk[:, None]) / (prior.b + sums), rtol=1e-15)
    p = Bernoulli(prior=BetaPrior(2.0, 3.0)).bind(X, None)._maximize(nk, sums / 10).probabilities
    np.testing.assert_allclose(p, (1 + sums / 10) / (3 + nk[:, None]), rtol=1e-15)
    # without a prior: maximum likelihood
    np.testing.assert_array_equal(Poisson().bind(X, None)._maximize(nk, sums).rates[0], [1.5, 0.25])


def test_conjugate_prior_updates_but_has_no_closed_form_expectations():
    prior = ConjugatePrior([2.0, 0.5], 2.0)
    post = prior.posterior((np.array([[3.0], [1.0]]), np.array([[1.0, 1.0], [0.0, 2.0]])))
    np.testing.assert_allclose(post.mode(), [[3.0 / 5, 1.5 / 5], [2.0 / 3, 2.5 / 3]])
    with pytest.raises(NotImplementedError, match="no closed-form E\\[eta\\]"):
        post.expected_natural()
    with pytest.raises(NotImplementedError, match="no closed-form KL"):
        post.kl(prior)


def test_the_priors_are_updating_priors():
    prior: UpdatingPrior
    for prior in (GammaPrior(), BetaPrior(), DirichletPrior(2.0), ConjugatePrior([1.0], 1.0)):
        assert callable(prior.posterior) and callable(prior.kl)


def test_dirichlet_packed_rejects_a_bad_concentration():
    with pytest.raises(Exception, match="Dirichlet concentration must be finite and > 0"):
        DirichletPrior.packed([1.0, 0.0], check=False)
