"""StudentTMixture with mclust's covariance models: the u-weighted statistics go into each
structure's own M-step (an ECM step), so every model's fit is monotone and reaches the
constrained maximum of the t mixture's likelihood."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp
from scipy.stats import multivariate_t

from emkit import StudentTMixture, load_model, save_model
from emkit.exceptions import InputError
from emkit.families.covariance import MCLUST_MODELS
from emkit.families.gaussian import covariance_structure


def _blobs(n: int = 120, seed: int = 0) -> np.ndarray:
    """Two heavy-tailed clusters with different scales and orientations."""
    rng = np.random.default_rng(seed)
    first = rng.standard_t(3.0, (n // 2, 2)) @ np.array([[1.0, 0.0], [0.7, 0.5]])
    second = rng.standard_t(3.0, (n - n // 2, 2)) @ np.array([[0.4, -0.3], [0.0, 1.2]]) + 6.0
    return rng.permutation(np.vstack([first, second]))


def _dense(tm: StudentTMixture, d: int) -> np.ndarray:
    structure = covariance_structure(tm.covariance_type)
    K = len(tm.weights_)
    return np.stack([structure.component_covariance(tm.covariances_, k, d) for k in range(K)])


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_every_mclust_model_is_a_monotone_ecm_fit(model: str) -> None:
    X = _blobs()
    tm = StudentTMixture(
        2, covariance_type=model, tol=0.0, max_iter=25, random_state=0, monotonicity="raise"
    ).fit(X)
    bounds = tm.lower_bounds_
    assert tm.n_iter_ == 25
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    structure = covariance_structure(model)
    assert structure.infeasible(tm.covariances_) is None
    cov = _dense(tm, 2)
    log_density = logsumexp(
        np.column_stack(
            [
                np.log(w) + multivariate_t(tm.means_[k], cov[k], df=nu).logpdf(X)
                for k, (w, nu) in enumerate(zip(tm.weights_, tm.degrees_of_freedom_, strict=True))
            ]
        ),
        axis=1,
    )
    np.testing.assert_allclose(tm.score_samples(X), log_density, rtol=1e-10)
    counts = {"EII": 1, "VEV": 5, "EVE": 4, "VVV": 6}
    if model in counts:  # mclust's nVarParams(model, d = 2, G = 2)
        n_free = 1 + 2 * 2 + counts[model] + 2  # weights, means, scales, per-component dof
        assert tm._n_parameters() == n_free


def _t_log_density(X: np.ndarray, mean: np.ndarray, cov: np.ndarray, nu: float) -> np.ndarray:
    d = X.shape[1]
    R = X - mean
    maha = np.einsum("ni,ij,nj->n", R, np.linalg.inv(cov), R)
    return (
        gammaln(0.5 * (nu + d))
        - gammaln(0.5 * nu)
        - 0.5 * d * np.log(nu * np.pi)
        - 0.5 * np.linalg.slogdet(cov)[1]
        - 0.5 * (nu + d) * np.log1p(maha / nu)
    )


def _covariances(model: str, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Two 2 x 2 covariances lambda_k D_k A_k D_k^T of ``model`` from free parameters
    (log volumes, a log shape, rotation angles) and how many it took."""
    vol, shp, ori = model
    i = 0

    def take(n: int) -> np.ndarray:
        nonlocal i
        out = np.broadcast_to(x[i : i + n], (2,))
        i += n
        return out

    lam = np.exp(take(1 if vol == "E" else 2))
    a = take(1 if shp == "E" else 2) if shp != "I" else np.zeros(2)
    theta = take(1 if ori == "E" else 2) if ori != "I" else np.zeros(2)
    cov = []
    for k in range(2):
        c, s = np.cos(theta[k]), np.sin(theta[k])
        D = np.array([[c, -s], [s, c]])
        cov.append(lam[k] * D @ np.diag([np.exp(a[k]), np.exp(-a[k])]) @ D.T)
    return np.stack(cov), i


@pytest.mark.parametrize("model", ["EEI", "VEV", "EVE"])
def test_log_likelihood_reaches_direct_maximization(model: str) -> None:
    """EM's optimum under the model's constraint equals a BFGS maximization of the t
    mixture's log-likelihood over the same constrained parameters (fixed nu)."""
    X = _blobs(100, seed=3)
    nu = 4.0
    tm = StudentTMixture(
        2,
        covariance_type=model,
        dof_type="fixed",
        degrees_of_freedom=nu,
        reg_covar=1e-12,
        tol=1e-13,
        max_iter=5000,
        random_state=0,
        monotonicity="raise",
    ).fit(X)
    assert tm.converged_
    em = tm.score(X) * len(X)

    def negative_loglik(x: np.ndarray) -> float:
        cov, used = _covariances(model, x)
        means = x[used : used + 4].reshape(2, 2)
        w = np.exp(x[used + 4]) / (1.0 + np.exp(x[used + 4]))
        parts = [np.log(w), np.log1p(-w)]
        columns = [parts[k] + _t_log_density(X, means[k], cov[k], nu) for k in range(2)]
        return -float(logsumexp(np.column_stack(columns), axis=1).sum())

    n_cov = _covariances(model, np.zeros(10))[1]
    rng = np.random.default_rng(1)
    start = np.concatenate(
        [
            0.3 * rng.standard_normal(n_cov),
            (tm.means_ + 0.1 * rng.standard_normal((2, 2))).ravel(),
            [0.0],
        ]
    )
    direct = minimize(negative_loglik, start, method="BFGS", options={"gtol": 1e-8})
    assert em >= -direct.fun - 1e-6 * abs(direct.fun)
    assert em == pytest.approx(-direct.fun, rel=1e-6)


def test_one_dimensional_models_and_bad_names() -> None:
    x = _blobs()[:, :1]
    for model in ("E", "V"):
        tm = StudentTMixture(2, covariance_type=model, random_state=0).fit(x)
        variances = np.ravel(tm.covariances_)
        assert (variances[0] == variances[1]) == (model == "E")
    with pytest.raises(InputError, match="covariance_type 'E' is mclust's model for one"):
        StudentTMixture(2, covariance_type="E").fit(_blobs())
    with pytest.raises(InputError, match=r"covariance_type must be one of .*'VEV'"):
        StudentTMixture(2, covariance_type="VEX").fit(_blobs())


@pytest.mark.parametrize("model", ["VEV", "EEI", "EII"])
def test_model_file_round_trip(model: str, tmp_path: Path) -> None:
    X = _blobs()
    tm = StudentTMixture(2, covariance_type=model, random_state=0).fit(X)
    save_model(tm, tmp_path / "t.npz")
    back = load_model(tmp_path / "t.npz")
    assert back.covariance_type == model
    np.testing.assert_allclose(back.score_samples(X), tm.score_samples(X), rtol=1e-12)
