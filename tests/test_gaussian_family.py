"""The Gaussian family piece by piece: densities, M-step, conversions, the gap bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from emkit.families.gaussian import (
    COVARIANCE_TYPES,
    GaussianFamily,
    GaussianParams,
    centred_scale,
    covariance_structure,
)

rng0 = np.random.default_rng(0)


def _log_density(
    family: GaussianFamily, Xp: np.ndarray, params: GaussianParams, natural
) -> np.ndarray:
    """log N(x | k) in full: the component-dependent part plus the common row term."""
    lp = family.log_prob(Xp, family.statistics(Xp), params, natural)
    row = family.row_term(Xp, params, natural)
    return lp if row is None else lp + row[:, None]


def _random_params(covariance_type: str, K: int, d: int, rng: np.random.Generator) -> tuple:
    means = rng.normal(0, 2, (K, d))
    if covariance_type == "full":
        A = rng.normal(size=(K, d, d))
        cov = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        A = rng.normal(size=(d, d))
        cov = A @ A.T + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, (K, d))
    else:
        cov = rng.uniform(0.3, 2.0, K)
    return means, cov


def _dense(covariance_type: str, cov: np.ndarray, k: int, d: int) -> np.ndarray:
    return covariance_structure(covariance_type).component_covariance(cov, k, d)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("exact_form", [False, True])
def test_log_prob_matches_scipy(covariance_type: str, exact_form: bool) -> None:
    K, d = 3, 4
    rng = np.random.default_rng(1)
    means, cov = _random_params(covariance_type, K, d, rng)
    X = rng.normal(0, 3, (50, d))
    shift = X.mean(axis=0)
    family = GaussianFamily(covariance_structure(covariance_type), shift)
    params = family.params_from_covariances(means, cov)
    natural = family.natural(params, np.float64)._replace(exact_form=exact_form)
    Xp = family.prepare(X, np.float64)
    got = _log_density(family, Xp, params, natural)
    for k in range(K):
        ref = stats.multivariate_normal(means[k], _dense(covariance_type, cov, k, d)).logpdf(X)
        np.testing.assert_allclose(got[:, k], ref, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_on_hard_assignments_is_the_closed_form_mle(covariance_type: str) -> None:
    K, d, n = 3, 3, 300
    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (n, d)) @ rng.normal(size=(d, d)) + 5
    labels = np.arange(n) % K
    resp = np.eye(K)[labels]
    family = GaussianFamily(covariance_structure(covariance_type), X.mean(axis=0), reg_covar=0.0)
    Xp = family.prepare(X, np.float64)
    T = family.statistics(Xp)
    nk = resp.sum(axis=0)
    params = family.m_step(None, nk, resp.T @ T, family.shared_statistics(Xp, None), float(n))
    means = np.array([X[labels == k].mean(axis=0) for k in range(K)])
    covs = np.array([np.cov(X[labels == k].T, bias=True) for k in range(K)])
    np.testing.assert_allclose(family.user_means(params), means, rtol=1e-10)
    expected = {
        "full": covs,
        "tied": np.einsum("k,kij->ij", nk, covs) / n,
        "diag": np.diagonal(covs, axis1=1, axis2=2),
        "spherical": np.diagonal(covs, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]
    np.testing.assert_allclose(params.covariances, expected, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precisions_round_trip(covariance_type: str) -> None:
    structure = covariance_structure(covariance_type)
    means, cov = _random_params(covariance_type, 2, 3, rng0)
    family = GaussianFamily(structure, np.zeros(3))
    from_cov = family.params_from_covariances(means, cov)
    precisions = structure.precisions(from_cov.precisions_cholesky)
    from_prec = family.params_from_precisions(means, precisions)
    np.testing.assert_allclose(from_prec.covariances, cov, rtol=1e-10)
    np.testing.assert_allclose(
        from_prec.precisions_cholesky, from_cov.precisions_cholesky, rtol=1e-10
    )


def test_diag_equals_full_on_diagonal_covariances() -> None:
    rng = np.random.default_rng(3)
    means, var = _random_params("diag", 3, 4, rng)
    X = rng.normal(size=(40, 4))
    log_probs = []
    for covariance_type, cov in [("diag", var), ("full", np.array([np.diag(v) for v in var]))]:
        family = GaussianFamily(covariance_structure(covariance_type), X.mean(axis=0))
        params = family.params_from_covariances(means, cov)
        Xp = family.prepare(X, np.float64)
        nat = family.natural(params, np.float64)
        log_probs.append(_log_density(family, Xp, params, nat))
    np.testing.assert_allclose(log_probs[0], log_probs[1], rtol=1e-12)


def test_expanded_form_switches_to_whitened_on_badly_scaled_data() -> None:
    rng = np.random.default_rng(4)
    means = np.array([[1e5, 0.0], [1e5 + 1.0, 1.0]])
    cov = np.array([np.eye(2) * 1e-4] * 2)
    family = GaussianFamily(covariance_structure("full"), np.zeros(2), scale=1e5 + 2)
    params = family.params_from_covariances(means, cov)
    assert family.natural(params, np.float64).exact_form
    X = means[0] + rng.normal(0, 1e-2, (20, 2))
    Xp = family.prepare(X, np.float64)
    got = _log_density(family, Xp, params, family.natural(params, np.float64))
    ref = stats.multivariate_normal(means[0], cov[0]).logpdf(X)
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-9)
    well_scaled = GaussianFamily(covariance_structure("full"), means.mean(axis=0), scale=3.0)
    p2 = well_scaled.params_from_covariances(means, np.array([np.eye(2)] * 2))
    assert not well_scaled.natural(p2, np.float64).exact_form


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_gap_is_the_lost_expected_log_likelihood(covariance_type: str) -> None:
    """Q(clip(S, r)) - Q(S + rI) computed directly equals the gap the family reports."""
    K, d, n, r = 2, 3, 200, 0.3
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, d)) * [1.0, 2.0, 0.5]
    resp = rng.dirichlet(np.ones(K), n)
    structure = covariance_structure(covariance_type)

    def fitted(reg: float) -> tuple:
        family = GaussianFamily(structure, X.mean(axis=0), reg_covar=reg)
        Xp = family.prepare(X, np.float64)
        T = family.statistics(Xp)
        nk = resp.sum(axis=0)
        return family, family.m_step(None, nk, resp.T @ T, family.shared_statistics(Xp, None), n)

    def expected_loglik(family: GaussianFamily, params: GaussianParams) -> float:
        Xp = family.prepare(X, np.float64)
        lp = _log_density(family, Xp, params, family.natural(params, np.float64))
        return float(np.sum(resp * lp))

    exact_family, exact = fitted(0.0)
    reg_family, regularized = fitted(r)
    # S + rI and the previous parameters lie in {Sigma >= rI}, whose best covariance
    # clips S's eigenvalues at r: the gap is what S + rI loses against it (a provable
    # bound, tighter than the loss against S itself where S has eigenvalues below r)
    cov = exact.covariances
    if structure.dense:
        lam, V = np.linalg.eigh(cov)
        clipped = (V * np.maximum(lam, r)[..., None, :]) @ np.swapaxes(V, -1, -2)
    else:
        clipped = np.maximum(cov, r)
    best = exact_family.params_from_covariances(exact_family.user_means(exact), clipped)
    lost = expected_loglik(exact_family, best) - expected_loglik(exact_family, regularized)
    unconstrained = expected_loglik(exact_family, exact) - expected_loglik(
        exact_family, regularized
    )
    assert 0 < lost <= unconstrained
    gap = reg_family.m_step_gap(regularized, resp.sum(axis=0), np.zeros(0))
    assert gap == pytest.approx(lost, rel=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_moments_recover_parameters(covariance_type: str) -> None:
    rng = np.random.default_rng(6)
    means, cov = _random_params(covariance_type, 2, 3, rng)
    family = GaussianFamily(covariance_structure(covariance_type), np.array([1.0, -2.0, 3.0]))
    params = family.params_from_covariances(means, cov)
    draws = family.sample(params, 1, 200_000, rng)
    np.testing.assert_allclose(draws.mean(axis=0), means[1], atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), _dense(covariance_type, cov, 1, 3), atol=0.03)


def test_unknown_covariance_type_is_named() -> None:
    with pytest.raises(ValueError, match="covariance_type must be one of 'full', 'tied'"):
        covariance_structure("banana")


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float64, np.float32]),
        st.tuples(st.integers(1, 5), st.integers(1, 3)),
        elements=st.floats(-(2.0**60), 2.0**60, width=32)
        | st.sampled_from([np.nan, np.inf, -np.inf]),
    ),
    st.data(),
)
def test_centred_scale_is_the_nan_to_num_extremes(X: np.ndarray, data: st.DataObject) -> None:
    # a column with nothing observed counts 0, an infinite extreme the largest float:
    # np.nan_to_num's values of the centred extremes, bit for bit
    shift = data.draw(arrays(np.float64, (X.shape[1],), elements=st.floats(-1e3, 1e3)))
    with np.errstate(invalid="ignore", over="ignore"):
        hi = np.nan_to_num(np.fmax.reduce(X, axis=0).astype(np.float64) - shift)
        lo = np.nan_to_num(np.fmin.reduce(X, axis=0).astype(np.float64) - shift)
        expected = float(max(np.abs(hi).max(), np.abs(lo).max(), 1e-300))
        assert centred_scale(X, shift) == expected


@pytest.mark.parametrize("covariance_type", [*COVARIANCE_TYPES, "EII", "VEI", "EVE", "VEV"])
def test_smallest_eigenvalues_are_each_components_matrixs(covariance_type: str) -> None:
    """Each structure's smallest_eigenvalues (its own shortcut: variances read as the
    eigenvalues, one matrix for a tied covariance, one stack) equal the smallest
    eigenvalue of each component's matrix less the ridge, in the columns' units."""
    from emkit.families.gaussian import covariance_structure

    rng = np.random.default_rng(3)
    K, d = 4, 3
    structure = covariance_structure(covariance_type)
    A = rng.normal(size=(K, d, d))
    full = A @ A.transpose(0, 2, 1) + np.eye(d)
    shape = structure.shape(K, d)
    if len(shape) == 3:
        cov = full
    elif len(shape) == 2 and shape[0] == d and shape[1] == d:
        cov = full[0]
    elif len(shape) == 2:
        cov = np.diagonal(full, axis1=1, axis2=2).copy()
    else:
        cov = full[:, 0, 0].copy()
    scale = np.array([0.5, 2.0, 1.5])
    low = structure.smallest_eigenvalues(cov, K, 0.3, scale)
    for k in range(K):
        S = structure.component_covariance(cov, k, d) - 0.3 * np.eye(d)
        expected = np.linalg.eigvalsh(S / np.outer(scale, scale))[0]
        np.testing.assert_allclose(low[k], expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("scale", [3.0, 1e3])
def test_natural_from_float64s_is_natural_in_the_dtype(covariance_type: str, scale: float) -> None:
    """The natural parameters in float32 made from float64's (what an EM step has
    already) are those made from the parameters: the same rounded values and the same
    exactness test, also where float32 needs the exact form (1e3: x x^T's round-off)."""
    rng = np.random.default_rng(6)
    means, cov = _random_params(covariance_type, 3, 4, rng)
    family = GaussianFamily(covariance_structure(covariance_type), np.zeros(4), scale=scale)
    params = family.params_from_covariances(means, cov)
    derived = family.natural(params, np.float64)
    for dtype in (np.float32, np.float64):
        direct = family.natural(params, dtype)
        made = family.natural_from(derived, params, dtype)
        assert made.eta.dtype == made.log_norm.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(made.eta, direct.eta)
        np.testing.assert_array_equal(made.log_norm, direct.log_norm)
        assert made.exact_form == direct.exact_form
    exact32 = family.natural(params, np.float32).exact_form
    assert exact32 == (scale > 100)
