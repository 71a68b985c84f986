"""Priors are objects that update: posterior, mode, mean, expected_natural and kl of the
conjugate priors, checked against scipy.stats densities, numerical integration and a
brute-force Bayes update on a grid; and the MAP M-steps that now go through them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import digamma

from emkit.families import (
    Bernoulli,
    BetaPrior,
    Categorical,
    ConjugatePrior,
    DirichletPrior,
    Exponential,
    GammaPrior,
    Gaussian,
    GaussianPrior,
    Poisson,
)
from emkit.families.gaussian import covariance_structure
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


# -- the Gaussian prior bound to a structure: posterior, mode, mean, expected_natural, kl --

GAUSSIAN_FORMS = ["full", "tied", "diag", "spherical"]
_D, _K = 2, 2


def _gaussian_posterior(covariance_type: str, prior: GaussianPrior | None = None):
    """(bound prior, its posterior) from weighted rows with soft responsibilities."""
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(40, _D)) * [1.0, 2.0] + [0.5, -1.0]
    resp = rng.dirichlet([1.0, 1.0], 40) * rng.uniform(0.5, 2.0, (40, 1))
    if prior is None:
        prior = GaussianPrior(
            mean=[0.3, -0.2], shrinkage=0.8, dof=4.5, scale=[[2.0, 0.4], [0.4, 1.0]]
        )
    structure = covariance_structure(covariance_type)
    bound = prior.attach(structure, _K, np.zeros(_D))
    T = structure.statistics(rows.copy())
    weights = resp.sum(axis=1)
    stats = (resp.sum(axis=0), resp.T @ T, structure.shared_statistics(rows, weights))
    return bound, bound.posterior(stats)


def _precision_scales(nw):
    """Each component's W = (W^-1)^-1 as a (K, d, d) matrix (tied: the one, repeated)."""
    scale = np.asarray(nw.scale)
    if nw.covariance_type == "full":
        inv = np.linalg.inv(scale)
    elif nw.covariance_type == "tied":
        inv = np.broadcast_to(np.linalg.inv(scale), (nw.n_components, _D, _D))
    elif nw.covariance_type == "diag":
        inv = np.stack([np.diag(1.0 / s) for s in scale])
    else:
        inv = np.stack([np.eye(_D) / s for s in scale])
    return inv


def _draws(nw, n: int, rng: np.random.Generator):
    """(mu (n, K, d), Lambda (n, K, d, d)) drawn from the Normal-Wishart: scipy's Wishart
    on the structure's W (diagonal for diag, isotropic for spherical, one for tied)."""
    W = _precision_scales(nw)
    dof = np.broadcast_to(nw.dof, (nw.n_components,))
    if nw.covariance_type == "tied":
        one = stats.wishart(df=float(dof[0]), scale=W[0]).rvs(n, random_state=rng)
        lam = np.repeat(one[:, None], nw.n_components, axis=1)
    else:
        lam = np.stack(
            [
                stats.wishart(df=float(dof[k]), scale=W[k]).rvs(n, random_state=rng)
                for k in range(nw.n_components)
            ],
            axis=1,
        )
    cov = np.linalg.inv(lam * nw.shrinkage[None, :, None, None])
    z = rng.standard_normal((n, nw.n_components, _D))
    mu = nw.mean[None] + np.einsum("nkij,nkj->nki", np.linalg.cholesky(cov), z)
    return mu, lam


def _log_normal_wishart(nw, mu, lam) -> np.ndarray:
    """log NW(mu, Lambda) of every draw, summed over the components (tied: one Wishart)."""
    K = mu.shape[1]
    W = np.broadcast_to(_precision_scales(nw), (K, _D, _D))
    dof = np.broadcast_to(nw.dof, (K,))
    beta = np.broadcast_to(nw.shrinkage, (K,))
    m = np.broadcast_to(nw.mean, (K, _D))
    total = np.zeros(mu.shape[0])
    for k in range(K):
        delta = mu[:, k] - m[k]
        total += (
            0.5 * _D * np.log(beta[k] / (2 * np.pi))
            + 0.5 * np.linalg.slogdet(lam[:, k])[1]
            - 0.5 * beta[k] * np.einsum("ni,nij,nj->n", delta, lam[:, k], delta)
        )
        if nw.covariance_type != "tied" or k == 0:
            total += stats.wishart(df=float(dof[k]), scale=W[k]).logpdf(lam[:, k].T)
    return total


def _within(value, draws, n_se: float = 5.0) -> None:
    """``value`` within ``n_se`` standard errors of the draws' mean (element-wise)."""
    mean = draws.mean(axis=0)
    se = draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(np.asarray(value) - mean) <= n_se * se + 1e-12), (value, mean, se)


@pytest.mark.parametrize("covariance_type", GAUSSIAN_FORMS)
def test_gaussian_expected_natural_matches_monte_carlo(covariance_type: str) -> None:
    """E_q[Lambda mu], E_q[Lambda] (in the structure's shape) and E_q[A(eta)] of the bound
    posterior against draws of (mu, Lambda). diag and spherical are scikit-learn's: a
    Wishart whose W is diagonal (isotropic), so E[log|Lambda|] has the Wishart's d
    digamma terms (one Gamma per dimension would not: the test tells them apart)."""
    _, post = _gaussian_posterior(covariance_type)
    nw = post.normal_wishart()
    (lam_mu, lam_shaped), expected_a = post.expected_natural()
    mu, lam = _draws(nw, 20_000, np.random.default_rng(12))
    _within(lam_mu, np.einsum("nkij,nkj->nki", lam, mu))
    diagonal = np.diagonal(lam, axis1=2, axis2=3)
    sampled = {
        "full": lam,
        "tied": lam[:, 0],
        "diag": diagonal,
        "spherical": diagonal.mean(axis=2),
    }[covariance_type]
    _within(lam_shaped, sampled)
    a = (
        0.5 * np.einsum("nki,nkij,nkj->nk", mu, lam, mu)
        - 0.5 * np.linalg.slogdet(lam)[1]
        + 0.5 * _D * np.log(2 * np.pi)
    )
    _within(expected_a, a)
    log_det = np.linalg.slogdet(lam)[1]
    _within(nw.expected_log_det(), log_det)
    # one Gamma(nu/2) per precision would give d psi(nu/2) in place of the Wishart's
    # sum_i psi((nu - i)/2): far outside the draws' noise
    nu = np.broadcast_to(nw.dof, (_K,))
    psi = digamma((nu[:, None] - np.arange(_D)) / 2).sum(axis=1)
    gamma = nw.expected_log_det() + _D * digamma(nu / 2) - psi
    se = log_det.std(axis=0) / np.sqrt(len(lam))
    assert np.all(np.abs(gamma - log_det.mean(axis=0)) > 10 * se)
    # E[log N(x | mu, Lambda)] = <t(x), E[eta]> - E[A] for a point x
    x = np.array([0.4, -0.7])
    exact = lam_mu @ x - 0.5 * np.einsum("i,nkij,j->nk", x, lam, x).mean(axis=0) - expected_a
    delta = x - mu
    logpdf = (
        0.5 * np.linalg.slogdet(lam)[1]
        - 0.5 * _D * np.log(2 * np.pi)
        - 0.5 * np.einsum("nki,nkij,nkj->nk", delta, lam, delta)
    )
    _within(exact, logpdf, 6.0)
    # the point estimates: E[mu] = m, E[Lambda]^-1 the fitted covariances
    means, covariances = post.mean()
    _within(means, mu)
    np.testing.assert_allclose(covariances, nw.covariances)


@pytest.mark.parametrize("covariance_type", GAUSSIAN_FORMS)
def test_gaussian_kl_matches_monte_carlo(covariance_type: str) -> None:
    bound, post = _gaussian_posterior(covariance_type)
    prior_nw = bound.normal_wishart()
    assert post.kl(post) == pytest.approx(0.0, abs=1e-9)
    assert prior_nw.kl(prior_nw) == pytest.approx(0.0, abs=1e-12)
    mu, lam = _draws(post.normal_wishart(), 5_000, np.random.default_rng(13))
    K = mu.shape[1]
    ratio = _log_normal_wishart(post.normal_wishart(), mu, lam) - _log_normal_wishart(
        prior_nw, mu, lam[:, :1].repeat(K, axis=1) if covariance_type == "tied" else lam
    )
    _within(post.kl(bound), ratio[:, None])
    assert post.kl(bound) == pytest.approx(post.kl(prior_nw)) and post.kl(bound) > 0


@pytest.mark.parametrize("covariance_type", [*GAUSSIAN_FORMS, "VEV", "EVE", "EEI"])
def test_gaussian_posterior_mode_is_the_map_m_step(covariance_type: str) -> None:
    """mode() of the bound posterior is the Gaussian family's MAP M-step for every
    structure; for full covariances it is also the Normal-Wishart's own mode."""
    rng = np.random.default_rng(14)
    X = rng.normal(size=(60, _D)) * [1.0, 3.0]
    prior = GaussianPrior(shrinkage=0.5, dof=4.0, scale=[1.0, 2.0])
    family = Gaussian(covariance_type=covariance_type, prior=prior).bind(X, None)
    resp = rng.dirichlet([1.0, 1.0], 60)
    Xc = X - family.shift
    nk = resp.sum(axis=0)
    sum_t = resp.T @ family.structure.statistics(Xc.copy())
    shared = family.structure.shared_statistics(Xc, None)
    params = family.m_step(None, nk, sum_t, shared, 60.0)
    post = family.attached_prior(_K).posterior((nk, sum_t, shared))
    means, cov, _ = post.mode(family.reg_covar)
    np.testing.assert_allclose(means, params.means, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cov, params.covariances, rtol=1e-12)
    if covariance_type == "full":
        nw_means, nw_cov = post.normal_wishart().mode()
        np.testing.assert_allclose(nw_means, means, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(nw_cov, post.mode()[1], rtol=1e-12)


def test_gaussian_posteriors_and_bound_priors_are_updating_priors() -> None:
    """The protocol's five operations on the Gaussian's posterior (the bound prior is its
    ``posterior``'s source), as on the other conjugate priors."""
    bound, post = _gaussian_posterior("diag")
    for name in ("mode", "mean", "expected_natural", "kl"):
        assert callable(getattr(post, name))
    assert callable(bound.posterior)
