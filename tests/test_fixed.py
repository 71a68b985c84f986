"""Known (fixed) parameters: every family, the mixing weights and products of families.

With some parameters known, the M-step must be the conditional maximizer of Q (plus the
log prior) over the free ones given the known ones. Each family's M-step is checked
against scipy.optimize maximizing Q, written with scipy.stats densities, over the free
parameters from the same responsibilities; known values must come out exactly as given;
EM must never decrease the objective (monotonicity="raise"); BIC counts free parameters.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import optimize, stats
from scipy.special import expit, gammaln, logit, softmax

from emkit import BernoulliMixture, CategoricalMixture, MixtureModel, PoissonMixture
from emkit.exceptions import InputError
from emkit.families import (
    Bernoulli,
    Beta,
    Categorical,
    ConjugatePrior,
    Exponential,
    Gamma,
    GammaPrior,
    Gaussian,
    GaussianPrior,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
    covariance_structure,
)
from emkit.models.mixing import MixingWeights
from emkit.models.mixture import Mixture, MixtureParams, MixtureStats, fixed_weights

K = 2
N = 80


# -- helpers -------------------------------------------------------------------------------


def _stats(family: Any, X: np.ndarray, resp: np.ndarray) -> MixtureStats:
    return Mixture(family).statistics_from_resp(X, None, resp)


def _m_step(family: Any, s: MixtureStats) -> Any:
    k = s.nk.shape[0]
    return family.m_step(family.default_params(k), s.nk, s.sum_t, s.shared, s.weight)


def _resp(rng: np.random.Generator, n: int = N, k: int = K) -> np.ndarray:
    return rng.dirichlet(np.ones(k), n)


def _get(attrs: dict[str, Any], path: tuple[Any, ...]) -> Any:
    value = attrs[path[0]]
    for i in path[1:]:
        value = value[i]
    return np.asarray(value, dtype=np.float64)


def _set(attrs: dict[str, Any], path: tuple[Any, ...], value: np.ndarray) -> None:
    if len(path) == 1:
        attrs[path[0]] = value
        return
    target = attrs[path[0]]
    for i in path[1:-1]:
        target = target[i]
    target[path[-1]] = value


# unconstrained coordinates of a parameter: real, positive (log), unit interval (logit),
# probability vector (log-ratios to the last), covariance matrix (log-Cholesky)
def _encode(value: np.ndarray, kind: str) -> np.ndarray:
    if kind == "real":
        return value.ravel()
    if kind == "positive":
        return np.log(value).ravel()
    if kind == "unit":
        return logit(value).ravel()
    if kind == "simplex":
        return np.log(value[:-1]) - np.log(value[-1])
    L = np.linalg.cholesky(value)
    i, j = np.tril_indices(value.shape[0])
    return np.where(i == j, np.log(L[i, j]), L[i, j])


def _decode(theta: np.ndarray, kind: str, like: np.ndarray) -> np.ndarray:
    if kind == "real":
        return theta.reshape(like.shape)
    if kind == "positive":
        return np.exp(theta).reshape(like.shape)
    if kind == "unit":
        return expit(theta).reshape(like.shape)
    if kind == "simplex":
        return softmax(np.append(theta, 0.0))
    d = like.shape[0]
    i, j = np.tril_indices(d)
    L = np.zeros((d, d))
    L[i, j] = np.where(i == j, np.exp(theta), theta)
    return L @ L.T


def _size(kind: str, like: np.ndarray) -> int:
    if kind == "simplex":
        return like.size - 1
    if kind == "spd":
        return like.shape[0] * (like.shape[0] + 1) // 2
    return like.size


# -- reference densities and priors (scipy.stats) --------------------------------------------


def _gaussian_cov(attrs: dict[str, Any], k: int, structure: str, d: int) -> np.ndarray:
    cov = np.asarray(attrs["covariances"])
    return covariance_structure(structure).component_covariance(cov, k, d)


def _gaussian_density(structure: str, prefix: str = "") -> Callable[..., np.ndarray]:
    def density(attrs: dict[str, Any], X: np.ndarray) -> np.ndarray:
        plain = {key[len(prefix) :]: value for key, value in attrs.items()}
        Y = np.log(X) if prefix else X
        d = Y.shape[1]
        out = np.column_stack(
            [
                stats.multivariate_normal.logpdf(
                    Y, plain["means"][k], _gaussian_cov(plain, k, structure, d)
                )
                for k in range(len(plain["means"]))
            ]
        )
        return out - np.log(X).sum(axis=1)[:, None] if prefix else out

    return density


PRIOR_MEAN, PRIOR_KAPPA, PRIOR_DOF = np.array([0.3, -0.2]), 0.5, 5.0
PRIOR_SCALE = np.diag([1.5, 0.8])


def _gaussian_prior() -> GaussianPrior:
    return GaussianPrior(mean=PRIOR_MEAN, shrinkage=PRIOR_KAPPA, dof=PRIOR_DOF, scale=PRIOR_SCALE)


def _niw_log_prior(structure: str) -> Callable[[dict[str, Any]], float]:
    """log N(mu_k | mean, Sigma_k / kappa) + inverse-Wishart (inverse-Gamma) covariances."""

    def log_prior(attrs: dict[str, Any]) -> float:
        means = np.asarray(attrs["means"])
        d = means.shape[1]
        total = 0.0
        for k in range(means.shape[0]):
            cov = _gaussian_cov(attrs, k, structure, d)
            total += stats.multivariate_normal.logpdf(means[k], PRIOR_MEAN, cov / PRIOR_KAPPA)
        cov = np.asarray(attrs["covariances"])
        a = PRIOR_DOF / 2
        if structure == "full":
            total += sum(stats.invwishart.logpdf(c, PRIOR_DOF, PRIOR_SCALE) for c in cov)
        elif structure == "tied":
            total += stats.invwishart.logpdf(cov, PRIOR_DOF, PRIOR_SCALE)
        elif structure == "diag":
            total += stats.invgamma.logpdf(cov, a, scale=np.diag(PRIOR_SCALE) / 2).sum()
        else:
            s = np.trace(PRIOR_SCALE) / d
            total += stats.invgamma.logpdf(cov, a, scale=s / 2).sum()
        return float(total)

    return log_prior


def _per_column(logpdf: Callable[..., np.ndarray], *names: str) -> Callable[..., np.ndarray]:
    """(n, K) log-densities of independent columns from a scipy logpdf(x, *params)."""

    def density(attrs: dict[str, Any], X: np.ndarray) -> np.ndarray:
        params = [np.asarray(attrs[name]) for name in names]
        k_range = range(params[0].shape[0])
        return np.column_stack([logpdf(X, *(p[k] for p in params)).sum(axis=1) for k in k_range])

    return density


def _categorical_density(attrs: dict[str, Any], X: np.ndarray) -> np.ndarray:
    probs = attrs["probabilities"]
    codes = X.astype(int)
    return np.column_stack(
        [
            sum(np.log(p[k][codes[:, j]]) for j, p in enumerate(probs))
            for k in range(probs[0].shape[0])
        ]
    )


def _multinomial_density(attrs: dict[str, Any], X: np.ndarray) -> np.ndarray:
    p = np.asarray(attrs["probabilities"])
    return np.column_stack(
        [stats.multinomial.logpmf(X, X.sum(axis=1).astype(int), p[k]) for k in range(len(p))]
    )


GAMMA_PHI, GAMMA_NU = np.array([4.0, 3.0, 1.0, 0.5]), 2.0  # (sum x, sum log x) of 2 rows


def _gamma_log_prior(attrs: dict[str, Any]) -> float:
    # <phi, eta_k> - nu A(eta_k), eta = (-beta, alpha - 1), A = log Gamma(alpha) - alpha log beta
    shapes, rates = np.asarray(attrs["shapes"]), np.asarray(attrs["rates"])
    eta = np.hstack([-rates, shapes - 1.0])
    A = np.sum(gammaln(shapes) - shapes * np.log(rates), axis=1)
    return float(np.sum(eta @ GAMMA_PHI - GAMMA_NU * A))


# -- the conditional M-step of every family against scipy.optimize --------------------------

COV_A = np.array([[2.0, 0.3], [0.3, 1.0]])
COV_B = np.array([[0.7, -0.2], [-0.2, 1.4]])


@dataclass
class Case:
    family: Callable[[], Any]
    data: Callable[[np.random.Generator], np.ndarray]
    fixed: dict[str, Any]
    density: Callable[[dict[str, Any], np.ndarray], np.ndarray]
    free: list[tuple[tuple[Any, ...], str]]  # (path into the fitted attributes, kind)
    log_prior: Callable[[dict[str, Any]], float] = field(default=lambda attrs: 0.0)


def _gaussian_data(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(N, 2)) @ np.array([[1.0, 0.4], [0.0, 0.8]]) + [1.0, -0.5]


def _gaussian_cases(prior: bool) -> dict[str, Case]:
    def family(structure: str) -> Callable[[], Any]:
        return lambda: Gaussian(
            structure, reg_covar=0.0, prior=_gaussian_prior() if prior else None
        )

    def case(structure: str, fixed: dict[str, Any], free: list[Any]) -> Case:
        log_prior = _niw_log_prior(structure) if prior else (lambda attrs: 0.0)
        return Case(
            family(structure), _gaussian_data, fixed, _gaussian_density(structure), free, log_prior
        )

    cov = ("covariances",)
    cases = {
        "full/one mean": case(
            "full",
            {"means": {0: [0.5, -1.0]}},
            [(("means", 1), "real"), ((*cov, 0), "spd"), ((*cov, 1), "spd")],
        ),
        "full/one covariance": case(
            "full",
            {"covariances": {1: COV_A}},
            [(("means", 0), "real"), (("means", 1), "real"), ((*cov, 0), "spd")],
        ),
        "full/one whole component": case(
            "full",
            {"means": {0: [0.5, -1.0]}, "covariances": {0: COV_B}},
            [(("means", 1), "real"), ((*cov, 1), "spd")],
        ),
        "tied/one mean": case(
            "tied", {"means": {1: [2.0, 0.0]}}, [(("means", 0), "real"), (cov, "spd")]
        ),
        "tied/covariance": case(
            "tied", {"covariances": COV_A}, [(("means", 0), "real"), (("means", 1), "real")]
        ),
        "diag/all means": case(
            "diag",
            {"means": [[0.5, -1.0], [2.0, 0.0]]},
            [((*cov, 0), "positive"), ((*cov, 1), "positive")],
        ),
        "diag/one variance": case(
            "diag",
            {"covariances": {0: [0.5, 2.0]}},
            [(("means", 0), "real"), (("means", 1), "real"), ((*cov, 1), "positive")],
        ),
        "spherical/one mean": case(
            "spherical",
            {"means": {0: [0.5, -1.0]}},
            [(("means", 1), "real"), ((*cov, 0), "positive"), ((*cov, 1), "positive")],
        ),
    }
    return {("MAP " if prior else "") + f"Gaussian {name}": c for name, c in cases.items()}


def _bernoulli_data(rng: np.random.Generator) -> np.ndarray:
    X = (rng.random((N, 3)) < [0.3, 0.5, 0.8]).astype(float)
    X[:2] = [[0, 0, 0], [1, 1, 1]]  # both values in every column
    return X


CASES: dict[str, Case] = {
    **_gaussian_cases(prior=False),
    **_gaussian_cases(prior=True),
    "LogNormal diag/one log-mean": Case(
        lambda: LogNormal("diag", reg_covar=0.0),
        lambda rng: np.exp(_gaussian_data(rng)),
        {"log_means": {0: [0.5, -1.0]}},
        _gaussian_density("diag", prefix="log_"),
        [
            (("log_means", 1), "real"),
            (("log_covariances", 0), "positive"),
            (("log_covariances", 1), "positive"),
        ],
    ),
    "Poisson/one component": Case(
        Poisson,
        lambda rng: rng.poisson([1.0, 4.0, 9.0], (N, 3)).astype(float),
        {"rates": {0: [2.0, 3.0, 5.0]}},
        _per_column(stats.poisson.logpmf, "rates"),
        [(("rates", 1), "positive")],
    ),
    "MAP Poisson/one component": Case(
        lambda: Poisson(prior=GammaPrior(2.0, 0.5)),
        lambda rng: rng.poisson([1.0, 4.0, 9.0], (N, 3)).astype(float),
        {"rates": {1: [2.0, 3.0, 5.0]}},
        _per_column(stats.poisson.logpmf, "rates"),
        [(("rates", 0), "positive")],
        lambda attrs: float(stats.gamma.logpdf(attrs["rates"], 2.0, scale=1 / 0.5).sum()),
    ),
    "Bernoulli/one component": Case(
        Bernoulli,
        _bernoulli_data,
        {"probabilities": {1: [0.2, 0.5, 0.9]}},
        _per_column(stats.bernoulli.logpmf, "probabilities"),
        [(("probabilities", 0), "unit")],
    ),
    "Categorical/one component": Case(
        Categorical,
        lambda rng: np.column_stack([rng.integers(0, 3, N), rng.integers(0, 2, N)]).astype(float),
        {"probabilities": {0: [[0.2, 0.3, 0.5], [0.6, 0.4]]}},
        _categorical_density,
        [(("probabilities", 0, 1), "simplex"), (("probabilities", 1, 1), "simplex")],
    ),
    "Multinomial/one component": Case(
        Multinomial,
        lambda rng: rng.multinomial(10, [0.2, 0.3, 0.5], N).astype(float),
        {"probabilities": {0: [0.5, 0.25, 0.25]}},
        _multinomial_density,
        [(("probabilities", 1), "simplex")],
    ),
    "Exponential/one component": Case(
        Exponential,
        lambda rng: rng.exponential([1.0, 3.0], (N, 2)),
        {"rates": {1: [0.5, 2.0]}},
        _per_column(lambda x, r: stats.expon.logpdf(x, scale=1 / r), "rates"),
        [(("rates", 0), "positive")],
    ),
    "Gamma/a shape and a rate": Case(
        Gamma,
        lambda rng: rng.gamma([2.0, 0.7], [1.5, 2.0], (N, 2)),
        {"shapes": {0: [1.5, 0.8]}, "rates": {1: [0.5, 1.2]}},
        _per_column(lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b), "shapes", "rates"),
        [(("rates", 0), "positive"), (("shapes", 1), "positive")],
    ),
    "MAP Gamma/rates": Case(
        lambda: Gamma(prior=ConjugatePrior(GAMMA_PHI, GAMMA_NU)),
        lambda rng: rng.gamma([2.0, 0.7], [1.5, 2.0], (N, 2)),
        {"rates": [[0.5, 1.2], [2.0, 0.3]]},
        _per_column(lambda x, a, b: stats.gamma.logpdf(x, a, scale=1 / b), "shapes", "rates"),
        [(("shapes", 0), "positive"), (("shapes", 1), "positive")],
        _gamma_log_prior,
    ),
    "Beta/an a and a b": Case(
        Beta,
        lambda rng: rng.beta([2.0, 0.6], [3.0, 0.8], (N, 2)),
        {"a": {0: [1.5, 0.8]}, "b": {1: [2.5, 0.5]}},
        _per_column(stats.beta.logpdf, "a", "b"),
        [(("b", 0), "positive"), (("a", 1), "positive")],
    ),
}


def _assert_known_values(attrs: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Known values come out of the M-step exactly as given."""
    for name, value in fixed.items():
        if not isinstance(value, dict):
            assert_array_equal(attrs[name], np.asarray(value, dtype=np.float64))
            continue
        for k, v in value.items():
            if isinstance(attrs[name], list):  # Categorical: one array per column
                for j, p in enumerate(v):
                    assert_array_equal(attrs[name][j][k], p)
            else:
                assert_array_equal(attrs[name][k], np.asarray(v, dtype=np.float64))


@pytest.mark.parametrize("name", sorted(CASES))
def test_m_step_is_the_conditional_maximizer(name: str) -> None:
    case = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    X = case.data(rng)
    resp = _resp(rng)
    family = case.family().bind(X, None).fix(case.fixed, K)
    attrs = family.fitted_attributes(_m_step(family, _stats(family, X, resp)))
    _assert_known_values(attrs, case.fixed)

    def objective(attrs_: dict[str, Any]) -> float:
        # Q (the responsibility-weighted log-densities) + log prior
        return float(np.sum(resp * case.density(attrs_, X)) + case.log_prior(attrs_))

    likes = [_get(attrs, path) for path, _ in case.free]
    sizes = [_size(kind, like) for (_, kind), like in zip(case.free, likes, strict=True)]

    def unpack(theta: np.ndarray) -> dict[str, Any]:
        out = copy.deepcopy(attrs)
        start = 0
        for (path, kind), like, size in zip(case.free, likes, sizes, strict=True):
            _set(out, path, _decode(theta[start : start + size], kind, like))
            start += size
        return out

    theta_m = np.concatenate(
        [_encode(like, kind) for (_, kind), like in zip(case.free, likes, strict=True)]
    )
    start = theta_m + 0.3 * rng.standard_normal(theta_m.shape)
    result = optimize.minimize(
        lambda t: -objective(unpack(t)), start, method="BFGS", options={"gtol": 1e-8}
    )
    best = objective(unpack(result.x))
    ours = objective(unpack(theta_m))
    assert ours >= best - 1e-8 * abs(best)  # no free parameter can do better
    optimum = unpack(result.x)
    for path, _ in case.free:
        assert_allclose(_get(attrs, path), _get(optimum, path), rtol=2e-4, atol=1e-5)


def test_weights_m_step_is_the_conditional_maximizer() -> None:
    # known weight 0.3 for component 1, Dirichlet(2) prior: maximize
    # sum_k (N_k + alpha - 1) log pi_k over pi_0, pi_2 with pi_0 + pi_2 = 0.7
    nk, alpha = np.array([30.0, 5.0, 12.0]), 2.0
    family = Poisson().bind(np.ones((3, 1)), None)
    model = Mixture(family, weights=MixingWeights(alpha, fixed_weights({1: 0.3}, 3)))
    s = MixtureStats(nk, np.ones((3, 1)), np.zeros(0), 0.0, 47.0)
    weights = model.m_step(MixtureParams(np.full(3, 1 / 3), family.default_params(3)), s).weights
    assert weights[1] == 0.3

    def minus_q(t: np.ndarray) -> float:
        free = 0.7 * softmax([t[0], 0.0])
        return -float((nk[0] + alpha - 1) * np.log(free[0]) + (nk[2] + alpha - 1) * np.log(free[1]))

    t = optimize.minimize(minus_q, [0.0], method="BFGS", options={"gtol": 1e-10}).x
    assert_allclose(weights[[0, 2]], 0.7 * softmax([t[0], 0.0]), rtol=1e-6)
    assert_allclose(weights[[0, 2]], 0.7 * (nk[[0, 2]] + 1) / (nk[[0, 2]] + 1).sum(), rtol=1e-12)
    assert model.n_parameters(3) == 1 + 3  # one free weight, three rates


# -- fixing a group at the unconstrained maximizer changes nothing -------------------------


def _close(a: Any, b: Any, rtol: float) -> None:
    if isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            assert_allclose(x, y, rtol=rtol, atol=1e-12)
    else:
        assert_allclose(a, b, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixing_a_group_at_the_unconstrained_maximizer_gives_the_same_free_parameters(
    name: str,
) -> None:
    case = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    X = case.data(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is not the point here
        fitted = MixtureModel(case.family(), n_components=K, random_state=0, max_iter=20).fit(X)
    resp = fitted.predict_proba(X)  # that fit's responsibilities
    family = case.family().bind(X, None)
    s = _stats(family, X, resp)
    start = MixtureParams(np.full(K, 1 / K), family.default_params(K))
    free = Mixture(family).m_step(start, s)
    attrs = family.fitted_attributes(free.components)
    for group in case.fixed:  # the families' groups that the cases fix
        whole = attrs[group]
        if isinstance(whole, list):  # Categorical: component 0's vectors, one per column
            component = {0: [p[0] for p in whole]}
        else:
            component = {0: whole[0]}
        shared = "tied" in name and group == "covariances"
        for value in [whole] if shared else [whole, component]:
            fixed = family.fix({group: value}, K)
            model = Mixture(
                fixed, weights=MixingWeights(fixed=fixed_weights({0: free.weights[0]}, K))
            )
            again = model.m_step(start, s)
            assert_allclose(again.weights, free.weights, rtol=1e-12)
            for key, fitted_value in fixed.fitted_attributes(again.components).items():
                _close(fitted_value, attrs[key], rtol=1e-8)


def test_refitting_with_the_converged_covariances_known_converges_to_the_same_means() -> None:
    X = _gaussian_data(np.random.default_rng(3))
    X[: N // 2] += 4.0
    free = MixtureModel(Gaussian(), 2, tol=1e-10, max_iter=1000, random_state=0).fit(X)
    fixed = {"weights": free.weights_, "covariances": free.covariances_}
    known = MixtureModel(
        Gaussian(), 2, fixed=fixed, tol=1e-10, max_iter=1000, random_state=0, monotonicity="raise"
    ).fit(X)
    assert_allclose(known.means_, free.means_, rtol=1e-4)
    assert_array_equal(known.covariances_, free.covariances_)
    assert_array_equal(known.weights_, free.weights_)


# -- whole fits: known values stay, the objective never decreases -------------------------


FIT_CASES = {
    "Gaussian full, some means and covariances": (
        lambda: Gaussian("full"),
        _gaussian_data,
        {"weights": {0: 0.3}, "means": {0: [1.0, -0.5]}, "covariances": {1: COV_A}},
    ),
    "Gaussian tied, covariance": (lambda: Gaussian("tied"), _gaussian_data, {"covariances": COV_A}),
    "Gaussian diag, all means": (
        lambda: Gaussian("diag", prior="auto"),
        _gaussian_data,
        {"means": [[0.0, -1.0], [2.0, 0.0]]},
    ),
    "Gaussian spherical, one variance": (
        lambda: Gaussian("spherical"),
        _gaussian_data,
        {"covariances": {1: 0.8}, "weights": [0.4, 0.6]},
    ),
    "LogNormal full, log-covariances": (
        lambda: LogNormal("full"),
        lambda rng: np.exp(_gaussian_data(rng)),
        {"log_covariances": [COV_A, COV_B]},
    ),
    **{
        f"{name}": (case.family, case.data, case.fixed)
        for name, case in CASES.items()
        if "/" in name and not name.startswith(("Gaussian", "MAP Gaussian", "LogNormal"))
    },
}


@pytest.mark.parametrize("name", sorted(FIT_CASES))
def test_em_keeps_known_values_and_never_decreases(name: str) -> None:
    make, data, fixed = FIT_CASES[name]
    X = data(np.random.default_rng(5))
    model = MixtureModel(
        make(),
        n_components=K,
        fixed=fixed,
        random_state=0,
        tol=1e-6,
        max_iter=2000,
        monotonicity="raise",
    ).fit(X)
    assert model.converged_
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * np.abs(model.lower_bounds_[1:]))
    family_fixed = {key: value for key, value in fixed.items() if key != "weights"}
    _assert_known_values(model.component_params_, family_fixed)
    weights = fixed.get("weights")
    if isinstance(weights, dict):
        for k, w in weights.items():
            assert model.weights_[k] == w
    elif weights is not None:
        assert_array_equal(model.weights_, weights)
    assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    # the start (one M-step from the initial responsibilities) holds them too
    first = MixtureModel(make(), n_components=K, fixed=fixed, random_state=0, max_iter=0).fit(X)
    _assert_known_values(first.component_params_, family_fixed)


# -- products: each block gets its part ------------------------------------------------------


def _mixed(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    return np.column_stack(
        [
            rng.normal(np.where(z, 5.0, 1.0), 1.0),
            rng.normal(np.where(z, -1.0, 2.0), 0.5),
            rng.poisson(np.where(z, 6.0, 1.0)),
            rng.random(n) < np.where(z, 0.8, 0.2),
            rng.gamma(np.where(z, 4.0, 1.5), 1.0),
        ]
    )


def _product() -> Product:
    return Product(
        {
            "size": ([0, 1], Gaussian("diag")),
            "visits": ([2], Poisson()),
            "smoker": ([3], Bernoulli()),
            "time": ([4], Gamma()),
        }
    )


PRODUCT_FIXED = {
    "weights": {1: 0.4},
    "size": {"means": {0: [1.0, 2.0]}},
    "visits": {"rates": {1: [6.0]}},
    "smoker": {"probabilities": [[0.2], [0.8]]},
    "time": {"shapes": {0: [1.5]}},
}


def test_product_blocks_keep_their_known_values_and_em_never_decreases() -> None:
    X = _mixed()
    model = MixtureModel(
        _product(),
        2,
        fixed=PRODUCT_FIXED,
        random_state=0,
        tol=1e-8,
        max_iter=500,
        n_init=2,
        monotonicity="raise",
    ).fit(X)
    params = model.component_params_
    assert model.weights_[1] == 0.4
    assert_array_equal(params["size"]["means"][0], [1.0, 2.0])
    assert_array_equal(params["visits"]["rates"][1], [6.0])
    assert_array_equal(params["smoker"]["probabilities"], [[0.2], [0.8]])
    assert_array_equal(params["time"]["shapes"][0], [1.5])
    assert_allclose(params["size"]["means"][1], [5.0, -1.0], atol=0.25)
    assert_allclose(params["visits"]["rates"][0], [1.0], atol=0.3)


def test_product_m_step_is_each_blocks_conditional_m_step() -> None:
    X = _mixed(200, seed=1)
    resp = _resp(np.random.default_rng(2), 200)
    product = (
        _product()
        .bind(X, None)
        .fix({key: value for key, value in PRODUCT_FIXED.items() if key != "weights"}, K)
    )
    together = product.fitted_attributes(_m_step(product, _stats(product, X, resp)))
    for name, (cols, block) in product.blocks.items():
        alone = block.fitted_attributes(_m_step(block, _stats(block, X[:, list(cols)], resp)))
        for key, value in alone.items():
            assert_allclose(together[name][key], value, rtol=1e-12)  # sums in another order
    # size: one free mean of 2, 2 x 2 variances; visits: one rate; smoker: none;
    # time: one free shape and two rates
    assert product.n_parameters(K) == (1 * 2 + 2 * 2) + 1 + 0 + (1 + 2)


# -- parameter counts and BIC ------------------------------------------------------------


def test_n_parameters_count_only_the_free_parameters() -> None:
    X = _gaussian_data(np.random.default_rng(0))
    K3 = 3

    def count(family: Any, fixed: dict[str, Any], data: np.ndarray = X) -> int:
        known = dict(fixed)
        weights = fixed_weights(known.pop("weights", None), K3)
        bound = family.bind(data, None).fix(known, K3)
        return Mixture(bound, weights=MixingWeights(fixed=weights)).n_parameters(K3)

    # full, d = 2: 2 free weights, 3 x 2 means, 3 x 3 covariance entries
    assert count(Gaussian(), {}) == 2 + 6 + 9
    # one known weight (2 free share the rest: 1 parameter), one known mean, two covariances
    fixed = {"weights": {0: 0.2}, "means": {0: [0.0, 0.0]}, "covariances": {1: COV_A, 2: COV_B}}
    assert count(Gaussian(), fixed) == 1 + 2 * 2 + 1 * 3
    assert count(Gaussian(), {"weights": [0.2, 0.3, 0.5]}) == 0 + 6 + 9
    assert count(Gaussian(), {"weights": {0: 0.2, 1: 0.3}}) == 0 + 6 + 9
    assert count(Gaussian("tied"), {"covariances": COV_A}) == 2 + 6 + 0
    assert count(Gaussian("diag"), {"covariances": {0: [1.0, 1.0]}}) == 2 + 6 + 2 * 2
    assert count(Gaussian("spherical"), {"means": np.zeros((3, 2))}) == 2 + 0 + 3
    counts = np.random.default_rng(0).poisson(3.0, (20, 3)).astype(float)
    assert count(Poisson(), {"rates": {0: [1.0, 2.0, 3.0]}}, counts) == 2 + 2 * 3
    codes = np.column_stack([np.arange(20) % 3, np.arange(20) % 2]).astype(float)
    probs = {2: [[0.2, 0.3, 0.5], [0.5, 0.5]]}
    assert count(Categorical(), {"probabilities": probs}, codes) == 2 + 2 * (2 + 1)
    positive = np.exp(X)
    assert count(Gamma(), {"shapes": np.ones((3, 2))}, positive) == 2 + 3 * 2
    assert count(LogNormal("full"), {"log_covariances": {0: COV_A}}, positive) == 2 + 6 + 2 * 3


def test_bic_and_aic_use_the_free_parameters() -> None:
    X = _gaussian_data(np.random.default_rng(4))
    fixed = {"weights": [0.5, 0.5], "covariances": [COV_A, COV_B]}
    model = MixtureModel(Gaussian(), 2, fixed=fixed, random_state=0).fit(X)
    n = len(X)
    assert model._n_parameters() == 4  # the two means only
    assert model.bic(X) == pytest.approx(-2 * model.score(X) * n + 4 * np.log(n), rel=1e-12)
    assert model.aic(X) == pytest.approx(-2 * model.score(X) * n + 2 * 4, rel=1e-12)
    free = MixtureModel(Gaussian(), 2, random_state=0).fit(X)
    assert free._n_parameters() == 1 + 4 + 6


# -- the lecture's example (seed 003): known weights and variances, means by EM -----------


def _cars_and_trucks(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truck = rng.random(n) < 0.4
    return np.where(truck, rng.normal(10.0, 2.0, n), rng.normal(5.0, 1.0, n))[:, None]


@pytest.mark.parametrize(
    ("covariance_type", "variances"),
    [("full", [[[1.0]], [[4.0]]]), ("diag", [[1.0], [4.0]]), ("spherical", [1.0, 4.0])],
)
def test_lecture_example_known_weights_and_variances(covariance_type: str, variances: Any) -> None:
    y = _cars_and_trucks()
    model = MixtureModel(
        Gaussian(covariance_type),
        n_components=2,
        fixed={"weights": [0.6, 0.4], "covariances": variances},
        n_init=4,
        tol=1e-10,
        max_iter=1000,
        random_state=0,
        monotonicity="raise",
    ).fit(y)
    mu = model.means_.ravel()
    assert_allclose(mu, [5.0, 10.0], atol=0.2)
    assert_array_equal(model.weights_, [0.6, 0.4])
    assert_array_equal(model.covariances_, variances)
    assert model._n_parameters() == 2
    # the lecture's iteration (eqs. 32-33): q from the known pi and sigma, mu as weighted means
    sigma, pi = np.array([1.0, 2.0]), np.array([0.6, 0.4])
    m = mu + np.array([0.3, -0.3])
    for _ in range(2000):
        q = pi * stats.norm.pdf(y, m, sigma)
        q /= q.sum(axis=1, keepdims=True)
        m = (q * y).sum(axis=0) / q.sum(axis=0)
    assert_allclose(mu, m, rtol=1e-6)


# -- warm starts, the estimators with a fixed family, float32 -------------------------------


def test_warm_start_with_new_known_values_starts_from_them() -> None:
    X = _gaussian_data(np.random.default_rng(6))
    X[: N // 2] += 3.0
    model = MixtureModel(Gaussian(), 2, random_state=0, monotonicity="raise").fit(X)
    known = {"weights": {0: 0.5}, "means": {1: model.means_[1] + 0.5}}
    model.set_params(warm_start=True, fixed=known).fit(X)
    assert model.weights_[0] == 0.5
    assert_array_equal(model.means_[1], known["means"][1])
    assert model._n_parameters() == 0 + 2 + 6
    model.set_params(fixed=None).fit(X)  # known values dropped again: all free
    assert model._n_parameters() == 1 + 4 + 6


def test_convenience_estimators_take_fixed() -> None:
    rng = np.random.default_rng(0)
    counts = np.vstack([rng.poisson([1, 8], (300, 2)), rng.poisson([9, 2], (300, 2))])
    poisson = PoissonMixture(2, fixed={"rates": {0: [1.0, 8.0]}}, random_state=0).fit(counts)
    assert_array_equal(poisson.rates_[0], [1.0, 8.0])
    assert_allclose(poisson.rates_[1], [9.0, 2.0], atol=0.5)
    assert poisson.get_params()["fixed"] == {"rates": {0: [1.0, 8.0]}}
    binary = (counts > 4).astype(float)
    bern = BernoulliMixture(2, fixed={"weights": [0.5, 0.5]}, random_state=0).fit(binary)
    assert_array_equal(bern.weights_, [0.5, 0.5])
    codes = np.minimum(counts, 2)
    cat = CategoricalMixture(
        2, fixed={"probabilities": {1: [[0.1, 0.2, 0.7], [0.2, 0.3, 0.5]]}}, random_state=0
    ).fit(codes)
    assert_array_equal(cat.probabilities_[0][1], [0.1, 0.2, 0.7])
    assert_array_equal(cat.probabilities_[1][1], [0.2, 0.3, 0.5])


def test_float32_keeps_known_values() -> None:
    X = _gaussian_data(np.random.default_rng(7)).astype(np.float32)
    fixed = {"means": {0: [1.0, -0.5]}, "covariances": {1: COV_A}}
    model = MixtureModel(Gaussian(), 2, fixed=fixed, dtype="float32", random_state=0).fit(X)
    assert_array_equal(model.means_[0], [1.0, -0.5])
    assert_array_equal(model.covariances_[1], COV_A)


def test_known_covariances_get_no_reg_covar_and_no_gap() -> None:
    X = _gaussian_data(np.random.default_rng(8))
    family = Gaussian("diag", reg_covar=0.1).bind(X, None).fix({"covariances": {0: [0.5, 2.0]}}, K)
    s = _stats(family, X, _resp(np.random.default_rng(9)))
    params = _m_step(family, s)
    assert_array_equal(params.covariances[0], [0.5, 2.0])
    free = Gaussian("diag", reg_covar=0.1).bind(X, None)
    free_params = _m_step(free, s)
    assert_allclose(params.covariances[1], free_params.covariances[1], rtol=1e-12)
    # the gap is the reg_covar loss of the free component alone
    assert (
        0 < family.m_step_gap(params, s.nk, s.sum_t) < free.m_step_gap(free_params, s.nk, s.sum_t)
    )
    tied = Gaussian("tied", reg_covar=0.1).bind(X, None).fix({"covariances": COV_A}, K)
    s = _stats(tied, X, _resp(np.random.default_rng(9)))
    assert tied.m_step_gap(_m_step(tied, s), s.nk, s.sum_t) == 0.0


# -- EM never decreases, whatever is known --------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    structure=st.sampled_from(["full", "tied", "diag", "spherical"]),
    fix_means=st.sets(st.integers(0, 2)),
    fix_covariances=st.booleans(),
    fix_weight=st.booleans(),
    prior=st.booleans(),
)
def test_em_never_decreases_with_random_known_groups(
    seed: int,
    structure: str,
    fix_means: set[int],
    fix_covariances: bool,
    fix_weight: bool,
    prior: bool,
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 2)) + rng.integers(0, 3, 40)[:, None] * 2.0
    fixed: dict[str, Any] = {"means": {k: rng.normal(size=2) * 2 for k in fix_means}}
    if fix_covariances:
        cov = np.array([[1.0, 0.2], [0.2, 0.5]])
        fixed["covariances"] = {
            "full": {1: cov},
            "tied": cov,
            "diag": {0: [1.0, 0.5]},
            "spherical": {2: 0.7},
        }[structure]
    if fix_weight:
        fixed["weights"] = {1: 0.25}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)  # degenerate starts: not the point
        warnings.simplefilter("error", category=RuntimeWarning)  # MonotonicityWarning included
        model = MixtureModel(
            Gaussian(structure, prior="auto" if prior else None),
            3,
            fixed=fixed,
            random_state=seed,
            max_iter=30,
            monotonicity="raise",
        ).fit(X)
    assert all(np.array_equal(model.means_[k], fixed["means"][k]) for k in fix_means)


# -- every error says what is wrong and what to do ------------------------------------------


def _fit(family: Any, X: np.ndarray, fixed: Any, **options: Any) -> Any:
    return MixtureModel(family, 2, fixed=fixed, random_state=0, **options).fit(X)


GAUSS_X = _gaussian_data(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("family", "fixed", "message"),
    [
        (Gaussian(), [1.0, 2.0], r"fixed must be None or a dict of known parameters, e\.g\."),
        (
            Gaussian(),
            {"precisions": np.ones((2, 2, 2))},
            r"The Gaussian family has no parameter 'precisions' to fix; the parameters it can "
            r"hold fixed are 'means', 'covariances' \(derived quantities",
        ),
        (
            Gaussian(),
            {"means": [1.0, 2.0]},
            r"fixed 'means' of the Gaussian family must be an array of shape \(2, 2\) \(all "
            r"components\) or a dict \{component: an array of shape \(2,\)\}, got shape \(2,\)",
        ),
        (
            Gaussian(),
            {"means": {0: [1.0]}},
            r"fixed 'means' of the Gaussian family must be an array of shape \(2,\) for one "
            r"component, got shape \(1,\)",
        ),
        (
            Gaussian(),
            {"means": {2: [1.0, 2.0]}},
            r"fixed 'means' has the component 2; components are the integers 0\.\.1",
        ),
        (
            Gaussian(),
            {"means": {0: ["a", "b"]}},
            r"fixed 'means' of the Gaussian family must be an array of shape \(2,\) for one "
            r"component, made of numbers; got \['a', 'b'\]",
        ),
        (Gaussian(), {"means": {0: [np.nan, 1.0]}}, r"fixed 'means' of component 0 must be finite"),
        (
            Gaussian("tied"),
            {"covariances": {0: COV_A}},
            r"fixed 'covariances' of the Gaussian family is shared by all components: fix the "
            r"whole of it \(an array of shape \(2, 2\)\)",
        ),
        (
            Gaussian(),
            {"covariances": {1: [[1.0, 2.0], [2.0, 1.0]]}},
            r"fixed 'covariances' of component 1 must be positive-definite",
        ),
        (
            Gaussian("tied"),
            {"covariances": [[1.0, 0.5], [0.0, 1.0]]},
            r"fixed 'covariances' must be a finite symmetric matrix",
        ),
        (
            Gaussian("diag"),
            {"covariances": {0: [1.0, 0.0]}},
            r"fixed 'covariances' of component 0 must be finite positive variances",
        ),
        (
            Gaussian(),
            {"weights": [0.5, 0.6]},
            r"fixed 'weights' for all 2 components must sum to 1, got 1\.1",
        ),
        (
            Gaussian(),
            {"weights": {0: 1.0}},
            r"fixed 'weights' sum to 1\.0, which leaves no mass for the free components \[1\]",
        ),
        (
            Gaussian(),
            {"weights": {0: -0.1}},
            r"fixed 'weights' of component 0 must be a finite number >= 0, got -0\.1",
        ),
        (
            Gaussian(),
            {"weights": [[0.5, 0.5]]},
            r"fixed 'weights' of the mixture family must be an array of shape \(2,\) \(all "
            r"components\) or a dict \{component: a number\}",
        ),
        (
            LogNormal(),
            {"means": {0: [1.0, 2.0]}},
            r"The LogNormal family has no parameter 'means' to fix; the parameters it can hold "
            r"fixed are 'log_means', 'log_covariances'",
        ),
        (
            Product({"size": ([0], Gaussian()), "rest": ([1], Gaussian())}),
            {"sizes": {"means": {0: [1.0]}}},
            r"fixed names the block 'sizes', but the Product's blocks are 'size', 'rest' \(and "
            r"'weights' fixes the mixing weights\)",
        ),
        (
            Product({"size": ([0], Gaussian()), "rest": ([1], Gaussian())}),
            {"size": [1.0, 2.0]},
            r"fixed values of Product block 'size' must be a dict of parameter name -> value, "
            r"e\.g\. \{'size': \{'means': \{0: \[5\.0\]\}\}\}, got list",
        ),
        (
            Product({"size": ([0], Gaussian()), "rest": ([1], Gaussian())}),
            {"size": {"rates": [1.0, 2.0]}},
            r"The Gaussian family has no parameter 'rates' to fix",
        ),
    ],
)
def test_bad_known_values_say_what_is_wrong(family: Any, fixed: Any, message: str) -> None:
    X = np.exp(GAUSS_X) if isinstance(family, type(LogNormal())) else GAUSS_X
    with pytest.raises(InputError, match=message):
        _fit(family, X, fixed)


def test_a_zero_weight_needs_no_dirichlet_prior() -> None:
    with pytest.raises(
        InputError,
        match=r"fixed 'weights' of component 1 is 0, where the Dirichlet prior "
        r"\(weight_concentration > 1\) has density 0",
    ):
        _fit(Gaussian(), GAUSS_X, {"weights": {1: 0.0}}, weight_concentration=2.0)


def test_bad_known_values_of_the_other_families() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (50, 2)).astype(float)
    with pytest.raises(
        InputError,
        match=r"fixed 'rates' of component 0 must be finite and positive, got \[-1, 2\]",
    ):
        _fit(Poisson(), counts, {"rates": {0: [-1.0, 2.0]}})
    with pytest.raises(
        InputError,
        match=r"The fixed parameters of the Poisson family must be a dict of parameter name -> "
        r"value \(names: 'rates'\), got list",
    ):
        Poisson().bind(counts, None).fix([1.0], 2)
    binary = (counts > 2).astype(float)
    with pytest.raises(
        InputError,
        match=r"fixed 'probabilities' of component 1 must be probabilities strictly between 0 "
        r"and 1 \(0 and 1 make the log-densities infinite",
    ):
        _fit(Bernoulli(), binary, {"probabilities": {1: [0.5, 1.0]}})
    codes = np.minimum(counts, [2, 1])
    with pytest.raises(InputError, match=r"must sum to 1 \(per column\), got sums \[1, 0\.9\]"):
        _fit(Categorical(), codes, {"probabilities": {0: [[0.2, 0.3, 0.5], [0.5, 0.4]]}})
    with pytest.raises(
        InputError, match=r"must be positive probabilities \(0 makes log p = -inf; use a tiny"
    ):
        _fit(Categorical(), codes, {"probabilities": {0: [[0.0, 0.5, 0.5], [0.5, 0.5]]}})
    with pytest.raises(
        InputError,
        match=r"fixed 'probabilities' of the Categorical family must be a list with one array "
        r"of shape \(C_j,\) per column \(2 columns with \[3, 2\] categories\), got 1 entries",
    ):
        _fit(Categorical(), codes, {"probabilities": {0: [[0.2, 0.3, 0.5]]}})
    with pytest.raises(
        InputError,
        match=r"fixed 'probabilities' of the Categorical family for column 1 must have shape "
        r"\(n_components, C_j\) with C_j = 2 categories, got shape \(2, 3\)",
    ):
        _fit(Categorical(), codes, {"probabilities": [np.full((2, 3), 1 / 3)] * 2})
    with pytest.raises(
        InputError,
        match=r"the columns' arrays have different numbers of rows",
    ):
        _fit(Categorical(), codes, {"probabilities": [np.full((2, 3), 1 / 3), [[0.5, 0.5]]]})
    with pytest.raises(InputError, match=r"fixed 'probabilities' of component 0 must sum to 1"):
        _fit(Multinomial(), counts, {"probabilities": {0: [0.5, 0.6]}})
    positive = counts + 0.5
    with pytest.raises(
        InputError, match=r"fixed 'shapes' of component 1 must be finite and positive"
    ):
        _fit(Gamma(), positive, {"shapes": {1: [0.0, 1.0]}})
    with pytest.raises(InputError, match=r"fixed 'b' of component 0 must be finite and positive"):
        _fit(Beta(), positive / 20, {"b": {0: [np.inf, 1.0]}})
    with pytest.raises(
        InputError, match=r"fixed 'rates' of component 0 must be finite and positive"
    ):
        _fit(Exponential(), counts, {"rates": {0: [np.nan, 1.0]}})


def test_one_column_categorical_takes_the_array_alone() -> None:
    codes = np.random.default_rng(0).integers(0, 3, (60, 1)).astype(float)
    whole = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    model = _fit(Categorical(), codes, {"probabilities": whole})
    assert_array_equal(model.probabilities_[0], whole)
    model = _fit(Categorical(), codes, {"probabilities": {1: [0.6, 0.2, 0.2]}})
    assert_array_equal(model.probabilities_[0][1], [0.6, 0.2, 0.2])
