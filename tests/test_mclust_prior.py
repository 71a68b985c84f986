"""mclust's conjugate prior (``prior='mclust'``) against R mclust 6.0.0's ``mstep`` and
``me`` with ``prior = priorControl()`` (tests/data/mclust_prior_reference.R), and the
MAP M-step of every covariance model as the bound prior's ``posterior(stats).mode()``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emkit import GaussianMixture, ModelBasedClustering
from emkit.exceptions import InputError
from emkit.families import GaussianPrior
from emkit.families.covariance import MCLUST_MODELS, mclust_prior_shares
from emkit.families.gaussian import GaussianFamily, covariance_structure
from emkit.families.priors import AttachedGaussianPrior, GaussianPosterior

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "mclust_prior_reference.json").read_text())
NO_MCLUST_PRIOR = ("VEE", "EVE", "VVE", "EVV")
# mclust 6.0.0's me() runs another M-step than its mstep() for these (checked below)
ME_DIFFERS = ("EEI", "EVI", "EEV")
CASES = [
    *[
        (name, m)
        for name in ("iris", "faithful")
        for m in MCLUST_MODELS
        if m not in NO_MCLUST_PRIOR
    ],
    ("waiting", "E"),
    ("waiting", "V"),
]


def _data(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    X = np.loadtxt(DATA / f"mclust_{name}.csv", delimiter=",", skiprows=1, ndmin=2)
    ref = REFERENCE["sets"][name]
    G = ref["G"]
    z = np.full((X.shape[0], G), 0.2 / (G - 1))
    z[np.arange(X.shape[0]), np.asarray(ref["labels"]) - 1] = 0.8
    return X, z, G


def _family(model: str, X: np.ndarray, prior: Any = "mclust") -> GaussianFamily:
    return GaussianFamily(covariance_structure(model), reg_covar=0.0, prior=prior).bind(X, None)


def _m_step(family: GaussianFamily, X: np.ndarray, z: np.ndarray) -> Any:
    structure = family.structure
    Xc = X - family.shift
    sum_t = z.T @ structure.statistics(Xc.copy())
    shared = structure.shared_statistics(Xc, None)
    G, d = z.shape[1], X.shape[1]
    params = family.m_step(family.default_params(G), z.sum(0), sum_t, shared, float(len(X)))
    dense = np.stack([structure.component_covariance(params.covariances, k, d) for k in range(G)])
    return params, dense


def _precisions_init(model: str, sigma: np.ndarray, G: int, d: int) -> np.ndarray:
    structure = covariance_structure(model)
    precision = np.linalg.inv(sigma)
    if not structure.dense:
        precision = np.diagonal(precision, axis1=1, axis2=2)
        precision = precision if len(structure.shape(G, d)) == 2 else precision[:, 0]
    return precision[0] if structure.shared else precision


def test_reference_holds_the_prior_hyper_parameters() -> None:
    """defaultPrior's mean, dof and scale are emkit's for every model."""
    for name in ("iris", "faithful", "waiting"):
        X, _, G = _data(name)
        d = X.shape[1]
        for model, ref in REFERENCE["sets"][name]["models"].items():
            hyper = ref["prior"]
            attached = _family(model, X).attached_prior(G)
            assert hyper["shrinkage"] == attached.shrinkage == 0.01
            assert hyper["dof"] == attached.dof == d + 2
            np.testing.assert_allclose(attached.mean + X.mean(0), hyper["mean"], rtol=1e-12)
            scale = np.asarray(hyper["scale"], dtype=float)
            if covariance_structure(model).dense:
                np.testing.assert_allclose(attached.scale, scale.reshape(d, d), rtol=1e-12)
            else:  # one variance for mclust's spherical and diagonal models
                np.testing.assert_allclose(attached.scale, scale.ravel()[0], rtol=1e-12)
    assert set(REFERENCE["sets"]["iris"]["models"]) == set(MCLUST_MODELS) - set(NO_MCLUST_PRIOR)


@pytest.mark.parametrize(("name", "model"), CASES)
def test_m_step_matches_mclust_with_its_prior(name: str, model: str) -> None:
    X, z, _ = _data(name)
    ref = REFERENCE["sets"][name]["models"][model]["mstep"]
    family = _family(model, X)
    params, cov = _m_step(family, X, z)
    means = params.means + family.shift
    if model == "EEI":
        # mclust leaves EEI's means at xbar_k (its covariance has the shrinkage term):
        # emkit shrinks them, as the prior's mode does for every other model
        nk = z.sum(0)
        xbar = z.T @ X / nk[:, None]
        np.testing.assert_allclose(xbar, ref["mean"], rtol=1e-12)
        np.testing.assert_allclose(
            means, (nk[:, None] * xbar + 0.01 * X.mean(0)) / (nk + 0.01)[:, None]
        )
    else:
        np.testing.assert_allclose(means, ref["mean"], rtol=1e-9)
    sigma = np.asarray(ref["sigma"])
    np.testing.assert_allclose(cov, sigma, rtol=1e-6, atol=1e-7 * np.abs(sigma).max())
    np.testing.assert_allclose(z.sum(0) / len(X), ref["pro"], rtol=1e-12)


@pytest.mark.parametrize(("name", "model"), CASES)
def test_mclust_me_runs_its_mstep_except_for_three_models(name: str, model: str) -> None:
    """Why EEI, EVI and EEV are not compared with me(): from the same z, me()'s first
    M-step differs from mstep() with the same prior, for those three models only."""
    ref = REFERENCE["sets"][name]["models"][model]
    first, mstep = np.asarray(ref["me_first_m_step"]["sigma"]), np.asarray(ref["mstep"]["sigma"])
    # (EII: mstep's shrinkage term uses kappa where me's uses kappa N_k / (kappa + N_k))
    same = np.allclose(first, mstep, rtol=1e-6, atol=1e-9 * np.abs(mstep).max())
    assert same == (model not in ME_DIFFERS)


@pytest.mark.parametrize(("name", "model"), [c for c in CASES if c[1] not in ME_DIFFERS])
def test_em_matches_mclust_with_its_prior(name: str, model: str) -> None:
    """MAP-EM from mclust's M-step reaches me()'s log-likelihood and parameters (SQUAREM
    with tol=0 runs to the fixed point: the MAP objective is flat there, to second order,
    while the log-likelihood mclust's stopping rule watches is not)."""
    X, _, G = _data(name)
    ref = REFERENCE["sets"][name]["models"][model]
    start, end = ref["mstep"], ref["me"]
    d = X.shape[1]
    gm = GaussianMixture(
        G,
        covariance_type=model,
        prior="mclust",
        reg_covar=0.0,
        tol=0.0,
        max_iter=60,
        accelerate="squarem",
        weights_init=start["pro"],
        means_init=start["mean"],
        precisions_init=_precisions_init(model, np.asarray(start["sigma"]), G, d),
        monotonicity="raise",
    ).fit(X)
    assert gm.score(X) * len(X) == pytest.approx(end["loglik"], abs=1e-6)
    np.testing.assert_allclose(gm.means_, end["mean"], rtol=1e-6)
    np.testing.assert_allclose(gm.weights_, end["pro"], rtol=1e-6)
    # the BIC is the log-likelihood's, at the posterior mode, as mclust's
    assert gm.bic(X) == pytest.approx(
        -2 * end["loglik"] + gm._n_parameters() * np.log(len(X)), abs=1e-5
    )


def _map_objective(family: GaussianFamily, params: Any, X: np.ndarray, z: np.ndarray) -> float:
    """sum_nk z_nk log N(x_n | mu_k, Sigma_k) + log prior: what the M-step maximizes."""
    d = X.shape[1]
    G = z.shape[1]
    total = family.log_prior(params)
    for k in range(G):
        cov = family.structure.component_covariance(params.covariances, k, d)
        R = X - family.shift - params.means[k]
        maha = np.einsum("ni,ij,nj->n", R, np.linalg.inv(cov), R)
        logdet = np.linalg.slogdet(cov)[1]
        total += float(z[:, k] @ (-0.5 * (maha + logdet + d * np.log(2 * np.pi))))
    return total


@pytest.mark.parametrize("convention", ["mclust", "conjugate"])
@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_map_m_step_maximizes_the_posterior(model: str, convention: str) -> None:
    """The bound prior's posterior mode beats every other parameter set of the model
    (the M-steps from other responsibilities), for all 14 models: so MAP-EM is monotone,
    also where mclust has no prior (VEE, EVE, VVE, EVV: each component's conjugate prior)."""
    X, z, _ = _data("faithful")
    prior = GaussianPrior(convention=convention)
    family = _family(model, X, prior)
    best = _map_objective(family, _m_step(family, X, z)[0], X, z)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = np.clip(z + rng.uniform(-0.15, 0.15, size=z.shape), 0.01, None)
        other_params = _m_step(family, X, other / other.sum(1, keepdims=True))[0]
        assert _map_objective(family, other_params, X, z) < best


def test_model_based_clustering_passes_the_prior_to_its_cells() -> None:
    """Mclust(prior = priorControl()): every cell is a MAP fit, its BIC the
    log-likelihood's at the posterior mode."""
    X, _, _ = _data("faithful")
    sweep = ModelBasedClustering(range(1, 4), covariance_types=["VVV", "EEI"], prior="mclust")
    sweep.fit(X)
    best = sweep.best_estimator_
    assert best.prior == "mclust"
    refit = GaussianMixture(
        best.n_components,
        covariance_type=best.covariance_type,
        prior="mclust",
        init_params="hc",
        tol=1e-5,
        max_iter=1000,
    ).fit(X)
    np.testing.assert_allclose(refit.means_, best.means_, rtol=1e-10)
    row = sweep.best_index_
    loglik = best.score(X) * len(X)
    assert sweep.results_["log_likelihood"][row] == pytest.approx(loglik, rel=1e-12)
    assert sweep.results_["bic"][row] == pytest.approx(-best.bic(X), rel=1e-12)
    # the prior moved the fit: not the maximum-likelihood cell
    plain = GaussianMixture(
        best.n_components, covariance_type=best.covariance_type, init_params="hc", tol=1e-5
    ).fit(X)
    assert not np.allclose(plain.means_, best.means_, rtol=1e-6)


def test_bad_priors_are_named() -> None:
    X, _, _ = _data("faithful")
    with pytest.raises(
        InputError, match=r"prior must be None, 'mclust', 'auto' or a GaussianPrior, got 'mclus'"
    ):
        GaussianMixture(2, prior="mclus").fit(X)
    with pytest.raises(InputError, match="convention must be 'conjugate' or 'mclust'"):
        GaussianPrior(convention="fraley")
    with pytest.raises(InputError, match="model holds no bound prior"):
        fitted = GaussianMixture(2, prior="mclust").fit(X)
        del fitted._bound_prior  # (as a model loaded from a file)
        fitted.partial_fit(X)


def test_mclust_prior_attaches_to_the_structure() -> None:
    """The prior is bound to the structure when attached: one variance for mclust's
    diagonal models (the mean of var(X) / K^(2/d)), the diagonal for the conjugate one."""
    X, _, G = _data("iris")
    d = X.shape[1]
    variances = np.var(X, axis=0, ddof=1) / G ** (2 / d)
    mclust = _family("VVI", X).attached_prior(G)
    conjugate = _family("VVI", X, "auto").attached_prior(G)
    np.testing.assert_allclose(mclust.scale, np.full(d, variances.mean()), rtol=1e-12)
    np.testing.assert_allclose(conjugate.scale, variances, rtol=1e-12)
    flat = _family("VEV", X, None).attached_prior(G)
    assert isinstance(flat, AttachedGaussianPrior) and flat.is_flat
    assert mclust_prior_shares("VEE", d, G, d + 2.0, True) is None
    posterior = (
        _family("EVE", X)
        .attached_prior(G)
        .posterior((np.ones(G), np.zeros((G, d + d * (d + 1) // 2)), np.zeros(0)))
    )
    assert isinstance(posterior, GaussianPosterior)


def test_conjugate_full_posterior_is_the_normal_wishart() -> None:
    """For a conjugate prior on full covariances the MAP posterior is the Normal-Wishart
    variational EM updates: the same mode, and its mean, expected_natural and kl."""
    X, z, G = _data("faithful")
    family = _family("full", X, "auto")
    Xc = X - family.shift
    stats = (z.sum(0), z.T @ family.structure.statistics(Xc.copy()), np.zeros(0))
    posterior = family.attached_prior(G).posterior(stats)
    means, cov, _ = posterior.mode()
    nw = posterior.normal_wishart()
    np.testing.assert_allclose(nw.mode()[0], means, rtol=1e-12)
    np.testing.assert_allclose(nw.mode()[1], cov, rtol=1e-12)
    np.testing.assert_allclose(posterior.mean()[1], nw.covariances, rtol=1e-12)
    assert posterior.kl(nw) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(posterior.expected_natural()[1], nw.expected_natural()[1])
    # and the Normal-Wishart update written out (Bishop 10.60-10.63) agrees
    prior = family.prior
    direct = prior.attach(family.structure, G, family.shift, family.data_covariance)
    assert isinstance(direct, AttachedGaussianPrior)
    nk = z.sum(0)
    xbar = (z.T @ X) / nk[:, None]
    scatter = np.stack([np.cov(X.T, aweights=z[:, k], bias=True) * nk[k] for k in range(G)])
    delta = xbar - prior.mean
    pull = prior.shrinkage * nk / (prior.shrinkage + nk)
    scale = direct.scale + scatter + pull[:, None, None] * delta[:, :, None] * delta[:, None, :]
    np.testing.assert_allclose(nw.scale, scale, rtol=1e-9)
    np.testing.assert_allclose(nw.dof, prior.dof + nk, rtol=1e-12)
    shrunk = (prior.shrinkage * prior.mean + nk[:, None] * xbar) / (prior.shrinkage + nk[:, None])
    np.testing.assert_allclose(nw.mean + family.shift, shrunk, rtol=1e-12)
    with pytest.raises(InputError, match=r"need a conjugate one.*got the 'VEV' structure"):
        _family("VEV", X).attached_prior(G).posterior(
            (stats[0], stats[1], stats[2])
        ).normal_wishart()
