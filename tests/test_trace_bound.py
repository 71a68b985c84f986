"""The bound made visible: every fit's trace holds the lower bound L(q, theta) after each
M-step beside the objective, and their gap is KL(q || p(z | x, theta)).

For exact EM, with q_t the E-step's posterior at theta_t: the E-step closes the gap
(L(q_t, theta_t) = objective[t]), the M-step lifts the bound (bound[t] = L(q_t,
theta_{t+1}) >= objective[t]) and it stays below the next objective (objective[t + 1] -
bound[t] = KL(q_t || p(z | x, theta_{t+1})) >= 0), a gap that closes as EM converges.
Checked for every model against these inequalities, and against a brute-force
computation from the data (a Gaussian mixture, k-means, PPCA).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma, gammaln, logsumexp
from scipy.stats import gamma, multivariate_normal, poisson

from emkit import (
    PPCA,
    ConvergenceWarning,
    FactorAnalysis,
    GaussianMixture,
    KMeans,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    StudentTMixture,
    load_model,
    save_model,
)
from emkit.families import (
    Bernoulli,
    Beta,
    Categorical,
    Exponential,
    Gamma,
    GammaPrior,
    Gaussian,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
)
from emkit.inference.em import EMTrace

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _groups(n: int = 90, d: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows from three well separated groups, and each row's group."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    centres = np.array([[0.0] * d, [4.0] * d, [0.0] + [-4.0] * (d - 1)])
    return centres[z] + rng.normal(size=(n, d)) * (0.6 + 0.3 * z)[:, None], z


def _positive(seed: int = 1) -> np.ndarray:
    X, _ = _groups(seed=seed)
    return np.exp(0.4 * X)


def _with_nan(X: np.ndarray, fraction: float = 0.1, seed: int = 2) -> np.ndarray:
    X = X.copy()
    rng = np.random.default_rng(seed)
    holes = rng.random(X.shape) < fraction
    holes[holes.all(axis=1)] = False
    X[holes] = np.nan
    return X


def _counts() -> np.ndarray:
    X, z = _groups()
    rng = np.random.default_rng(3)
    return rng.poisson(np.exp(np.abs(X) * 0.4) + 2.0 * z[:, None]).astype(float)


def _factors(seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(120, 2)) @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(120, 5))


def _product_table() -> np.ndarray:
    X, z = _groups()
    rng = np.random.default_rng(5)
    return np.column_stack([X, rng.poisson(1.0 + 4.0 * z), (z + rng.integers(0, 2, z.size)) % 3])


# Every estimator that fits by EM, on data where no component collapses: (estimator, X).
CASES: dict[str, Callable[[], tuple[Any, np.ndarray]]] = {
    **{
        f"GaussianMixture-{c}": (
            lambda c=c: (GaussianMixture(3, covariance_type=c, random_state=0), _groups()[0])
        )
        for c in COVARIANCE_TYPES
    },
    "GaussianMixture-hard": lambda: (GaussianMixture(3, e_step="hard"), _groups()[0]),
    "GaussianMixture-NaN": lambda: (GaussianMixture(3), _with_nan(_groups(d=3)[0])),
    "GaussianMixture-prior": lambda: (
        MixtureModel(Gaussian("full", prior="auto"), 3, weight_concentration=2.0),
        _groups()[0],
    ),
    "Poisson-prior": lambda: (
        MixtureModel(Poisson(prior=GammaPrior(shape=2.0, rate=0.5)), 3),
        _counts(),
    ),
    "Bernoulli": lambda: (MixtureModel(Bernoulli(), 3), (_groups(d=4)[0] > 1).astype(float)),
    "Categorical": lambda: (MixtureModel(Categorical(), 2), _product_table()[:, 3:]),
    "Multinomial": lambda: (MixtureModel(Multinomial(), 2), _counts()),
    "Exponential": lambda: (MixtureModel(Exponential(), 2), _positive()),
    "Gamma": lambda: (MixtureModel(Gamma(), 2), _positive()),
    "Beta": lambda: (MixtureModel(Beta(), 2), 1.0 / (1.0 + np.exp(-_groups()[0]))),
    "LogNormal-tied": lambda: (MixtureModel(LogNormal("tied"), 3), _positive()),
    "Product": lambda: (
        MixtureModel(
            Product(
                {
                    "g": ([0, 1], Gaussian("tied")),
                    "p": ([2], Poisson()),
                    "c": ([3], Categorical()),
                }
            ),
            3,
        ),
        _product_table(),
    ),
    "Product-NaN": lambda: (
        MixtureModel(Product({"g": ([0, 1], Gaussian()), "p": ([2], Poisson())}), 3),
        _with_nan(_product_table()[:, :3]),
    ),
    "KMeans": lambda: (KMeans(3, n_init=1), _groups()[0]),
    **{
        f"StudentTMixture-{c}": (lambda c=c: (StudentTMixture(3, covariance_type=c), _groups()[0]))
        for c in ("full", "tied")
    },
    "StudentTMixture-NaN": lambda: (StudentTMixture(3), _with_nan(_groups(45, 3)[0])),
    "PPCA": lambda: (PPCA(2), _factors()),
    "FactorAnalysis": lambda: (FactorAnalysis(2), _factors()),
    "FactorAnalysis-NaN": lambda: (FactorAnalysis(2), _with_nan(_factors())),
    "MixtureOfPPCA": lambda: (MixtureOfPPCA(2, n_factors=1), _factors()),
    "MixtureOfFactorAnalyzers": lambda: (MixtureOfFactorAnalyzers(2, n_factors=1), _factors()),
}


def _round_off(objective: np.ndarray) -> np.ndarray:
    return 1e-9 * (1.0 + np.abs(objective))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_e_step_closes_the_gap_and_the_m_step_lifts_the_bound(case: str) -> None:
    estimator, X = CASES[case]()
    params = estimator.get_params()
    estimator.set_params(max_iter=25, random_state=0, monotonicity="raise")
    if "tol" in params:
        estimator.set_params(tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short runs on purpose
        estimator.fit(X)
    trace = estimator.trace_
    objective, bound = trace.objective, trace.bound
    assert bound.shape == objective.shape and np.all(np.isfinite(bound))
    # the M-step lifts the bound above the E-step's tie point L(q_t, theta_t) = objective
    assert np.all(bound >= objective - _round_off(objective))
    # ... and it stays a lower bound of the next objective: the gap is a KL divergence
    np.testing.assert_allclose(trace.kl, objective[1:] - bound[:-1])
    assert np.all(trace.kl >= -_round_off(objective[1:]))


@pytest.mark.parametrize(
    ("case", "tol"),
    [
        ("GaussianMixture-full", 1e-10),
        ("Poisson-prior", 1e-10),
        ("PPCA", 1e-10),
        ("StudentTMixture-tied", 1e-6),  # slow in nu: a looser stop
        ("FactorAnalysis", 1e-7),
    ],
)
def test_the_gap_closes_as_em_converges(case: str, tol: float) -> None:
    estimator, X = CASES[case]()
    estimator.set_params(tol=tol, max_iter=3000, random_state=0)
    estimator.fit(X)
    kl = estimator.trace_.kl
    assert estimator.converged_ and kl.size > 3
    assert kl[-1] < 10 * tol and kl[-1] < 1e-2 * kl.max()


def _gm_at(X: np.ndarray, covariance_type: str, t: int) -> GaussianMixture:
    """The mixture after t EM iterations from one initialization (t = 0: the start)."""
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=0.0, max_iter=t)
    return gm.fit(X)


def _full_covariances(gm: GaussianMixture) -> np.ndarray:
    K, d = gm.means_.shape
    cov = gm.covariances_
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (K, d, d))
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if gm.covariance_type == "spherical":
        return np.stack([c * np.eye(d) for c in cov])
    return np.asarray(cov)


def _log_joint(gm: GaussianMixture, X: np.ndarray) -> np.ndarray:
    """log p(x_n, k) from scipy.stats, (n, K)."""
    cov = _full_covariances(gm)
    return np.column_stack(
        [
            np.log(gm.weights_[k]) + multivariate_normal(gm.means_[k], cov[k]).logpdf(X)
            for k in range(gm.weights_.shape[0])
        ]
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_bound_is_e_q_log_p_plus_the_entropy_of_q(covariance_type: str) -> None:
    """bound[t - 1] = E_q[log p(x, z | theta_t)] + H(q), q = p(z | x, theta_{t-1}), by brute
    force over the rows; the gap is sum_n KL(q_n || p(z | x_n, theta_t))."""
    X = np.random.default_rng(7).normal(size=(60, 3)) * [1.0, 2.0, 0.5]  # overlapping
    trace = _gm_at(X, covariance_type, 4).trace_
    for t in (1, 2, 3):
        before, after = _gm_at(X, covariance_type, t - 1), _gm_at(X, covariance_type, t)
        log_q = _log_joint(before, X)
        log_q -= logsumexp(log_q, axis=1, keepdims=True)
        q = np.exp(log_q)
        log_joint = _log_joint(after, X)
        bound = np.sum(q * (log_joint - log_q)) / X.shape[0]
        assert trace.bound[t - 1] == pytest.approx(bound, rel=1e-10)
        assert trace.objective[t - 1] == pytest.approx(before.score(X), rel=1e-10)
        log_p = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
        kl = np.sum(q * (log_q - log_p)) / X.shape[0]
        assert kl > 1e-6 and trace.kl[t - 1] == pytest.approx(kl, rel=1e-6)


def test_a_poisson_mixture_bound_with_a_prior_by_brute_force() -> None:
    """Any family through its natural parameters; MAP-EM's bound adds the log prior,
    which the objective holds too: bound - objective = [Q + log prior](new) - (old)."""
    X = _counts()[:, :1]
    prior = GammaPrior(shape=2.0, rate=0.5)

    def at(t: int) -> Any:
        model = MixtureModel(Poisson(prior=prior), 2, random_state=0, tol=0.0, max_iter=t)
        return model.fit(X)

    trace = at(3).trace_
    for t in (1, 2, 3):
        before, after = at(t - 1), at(t)
        r = before.predict_proba(X)
        rates = after.component_params_["rates"][:, 0]
        log_joint = np.log(after.weights_) + poisson.logpmf(X, rates[None, :])
        log_prior = np.sum(gamma.logpdf(rates, 2.0, scale=2.0))
        bound = np.sum(r * (log_joint - np.log(r))) + log_prior
        assert trace.bound[t - 1] == pytest.approx(bound / X.shape[0], rel=1e-10)


def _t_at(X: np.ndarray, t: int) -> StudentTMixture:
    return StudentTMixture(2, random_state=0, tol=0.0, max_iter=t).fit(X)


def test_the_student_t_bound_is_e_q_log_p_plus_the_entropy_of_q() -> None:
    """With labels and scales missing, q_nk(u) = r_nk Gamma(u; (nu + d)/2, (nu + delta)/2)
    at theta_{t-1}, and L = E_q[log pi_k + log N(x; mu_k, Sigma_k / u) + log Gamma(u;
    nu_k/2, nu_k/2)] + H(q), by brute force over the rows."""
    rng = np.random.default_rng(9)
    X = np.vstack([rng.standard_t(4.0, (40, 2)), rng.standard_t(6.0, (40, 2)) + 3.0])
    d = X.shape[1]
    trace = _t_at(X, 3).trace_
    for t in (1, 2, 3):
        before, after = _t_at(X, t - 1), _t_at(X, t)
        r = before.predict_proba(X)
        bound = -np.sum(r * np.log(np.where(r > 0, r, 1.0)))
        for k in range(2):
            nu, nu_new = before.degrees_of_freedom_[k], after.degrees_of_freedom_[k]
            e = X - before.means_[k]
            delta = np.einsum("ni,ij,nj->n", e, np.linalg.inv(before.covariances_[k]), e)
            a, b = 0.5 * (nu + d), 0.5 * (nu + delta)
            mean_u, mean_log_u = a / b, digamma(a) - np.log(b)
            entropy = a - np.log(b) + gammaln(a) + (1.0 - a) * digamma(a)
            cov = after.covariances_[k]
            e = X - after.means_[k]
            delta_new = np.einsum("ni,ij,nj->n", e, np.linalg.inv(cov), e)
            log_normal = (
                -0.5 * d * np.log(2.0 * np.pi)
                + 0.5 * d * mean_log_u
                - 0.5 * np.linalg.slogdet(cov)[1]
                - 0.5 * mean_u * delta_new
            )
            half = 0.5 * nu_new
            log_gamma = half * np.log(half) - gammaln(half) + (half - 1.0) * mean_log_u
            log_gamma -= half * mean_u
            expected = np.log(after.weights_[k]) + log_normal + log_gamma + entropy
            bound += np.sum(r[:, k] * expected)
        assert trace.bound[t - 1] == pytest.approx(bound / X.shape[0], rel=1e-9)


def test_the_k_means_bound_is_minus_the_old_assignment_inertia_at_the_new_centers() -> None:
    X, _ = _groups(60, 2, seed=8)
    for t in (1, 2):
        before = KMeans(3, n_init=1, init="random", random_state=1, tol=0.0, max_iter=t)
        after = KMeans(3, n_init=1, init="random", random_state=1, tol=0.0, max_iter=t + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            before.fit(X)
            after.fit(X)
        if after.n_iter_ <= t:  # converged earlier: nothing left to compare
            break
        labels = before.predict(X)  # the C-step of iteration t + 1, at before's centers
        bound = -np.sum((X - after.cluster_centers_[labels]) ** 2) / X.shape[0]
        assert after.trace_.bound[t] == pytest.approx(bound, rel=1e-10)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), d=st.integers(1, 3))
def test_the_bound_sits_between_consecutive_objectives(seed: int, k: int, d: int) -> None:
    """objective[t] <= bound[t] <= objective[t + 1] on random data (no collapse: more
    rows than the components can isolate)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40 * k, d)) + rng.normal(0.0, 3.0, (k, d))[rng.integers(0, k, 40 * k)]
    gm = GaussianMixture(
        k, covariance_type=str(rng.choice(COVARIANCE_TYPES)), random_state=seed, tol=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.set_params(max_iter=15, monotonicity="raise").fit(X)
    objective, bound = gm.trace_.objective, gm.trace_.bound
    assert np.all(bound >= objective - _round_off(objective))
    assert np.all(bound[:-1] <= objective[1:] + _round_off(objective[1:]))


def test_squarem_cycles_record_no_bound_and_no_gap() -> None:
    X, _ = _groups()
    gm = GaussianMixture(3, accelerate="squarem", random_state=0).fit(X)
    assert gm.trace_.bound.shape == gm.trace_.objective.shape
    assert np.all(np.isnan(gm.trace_.bound)) and np.all(np.isnan(gm.trace_.kl))


def test_a_trace_without_bounds_has_an_empty_gap() -> None:
    trace = EMTrace(np.array([-2.0, -1.5]), np.zeros(2))
    assert trace.bound.shape == (0,) and trace.kl.shape == (0,)


def test_the_bound_survives_a_model_file(tmp_path: Path) -> None:
    gm = GaussianMixture(3, random_state=0).fit(_groups()[0])
    loaded = load_model(save_model(gm, tmp_path / "model.npz"))
    np.testing.assert_array_equal(loaded.trace_.bound, gm.trace_.bound)


class _Variational:
    """A model whose objective is itself a bound (an ELBO that rises by a script)."""

    objective_is_bound = True

    def expectation(self, params: int) -> Callable[..., np.ndarray]:
        return lambda X, weights: np.zeros(1)  # (an engine passes the rows and weights)

    def m_step(self, params: int, stats: object) -> int:
        return params + 1

    def objective(self, params: int, stats: object) -> float:
        return -1.0 / (1.0 + params)

    def m_step_gap(self, params: int, stats: object) -> float:
        return 0.0


def test_a_variational_model_records_its_elbo_as_the_bound() -> None:
    from emkit.engines import InMemoryEngine
    from emkit.inference import fit_em

    result = fit_em(_Variational(), InMemoryEngine(), np.zeros((4, 1)), 0, tol=0.0, max_iter=4)
    np.testing.assert_array_equal(result.trace.bound, result.trace.objective)


def test_variational_em_records_its_elbo_and_sampled_e_steps_no_bound() -> None:
    counts = _counts()
    vb = MixtureModel(Poisson(prior="auto"), 3, e_step="variational", random_state=0)
    vb.fit(counts)
    np.testing.assert_array_equal(vb.trace_.bound, vb.trace_.objective)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sem = GaussianMixture(3, e_step="stochastic", random_state=0, max_iter=5).fit(_groups()[0])
    assert sem.trace_.bound.shape == (sem.n_iter_,) and np.all(np.isnan(sem.trace_.bound))


MCLUST_MODELS = "EII VII EEI VEI EVI VVI EEE VEE EVE VVE EEV VEV EVV VVV".split()


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_mclust_structures_lift_the_bound_too(model: str) -> None:
    """The 14 covariance structures, their iterative (GEM) M-steps included: each raises
    Q, so the bound still rises above the objective and stays below the next one."""
    X, _ = _groups(120, 3, seed=10)
    gm = GaussianMixture(3, covariance_type=model, random_state=0, max_iter=15, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    objective, bound = gm.trace_.objective, gm.trace_.bound
    assert np.all(np.isfinite(bound))
    assert np.all(bound >= objective - _round_off(objective))
    assert np.all(gm.trace_.kl >= -_round_off(objective[1:]))
