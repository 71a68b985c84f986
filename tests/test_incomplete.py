"""Incomplete data: missing values (NaN), known labels and hard (classification) EM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from emkit import GaussianMixture, MixtureModel, MixtureOfFactorAnalyzers, MixtureOfPPCA
from emkit.exceptions import InputError
from emkit.families import (
    Bernoulli,
    Beta,
    Categorical,
    Exponential,
    Gamma,
    Gaussian,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
    _missing_kernels,
    covariance_structure,
)
from emkit.families._gaussian_missing import (
    _compiled_algebra,
    _groups,
    _groups_by_bytes,
    spd_inverse,
)
from emkit.families.lognormal import LogNormalFamily
from emkit.models.mixture import Mixture, MixtureParams

STRUCTURES = ("full", "tied", "diag", "spherical")


def _correlated(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    mixing = rng.normal(size=(2, d, d)) / np.sqrt(d) + np.eye(d)
    centres = np.array([np.zeros(d), np.full(d, 4.0)])
    return centres[z] + np.einsum("nj,nij->ni", rng.standard_normal((n, d)), mixing[z])


def _holes(X: np.ndarray, fraction: float, seed: int = 1) -> np.ndarray:
    """``X`` with ``fraction`` of its entries NaN at random, every row keeping one value."""
    rng = np.random.default_rng(seed)
    out = X.astype(np.float64).copy()
    out[rng.random(X.shape) < fraction] = np.nan
    empty = np.isnan(out).all(axis=1)
    keep = rng.integers(0, X.shape[1], X.shape[0])
    out[empty, keep[empty]] = X[empty, keep[empty]]
    return out


def _gaussian_params(structure: str, d: int, K: int, rng: np.random.Generator) -> tuple:
    means = rng.normal(size=(K, d))
    if structure == "full":
        A = rng.normal(size=(K, d, d))
        cov = A @ np.swapaxes(A, 1, 2) + np.eye(d)
    elif structure == "tied":
        A = rng.normal(size=(d, d))
        cov = A @ A.T + np.eye(d)
    elif structure == "diag":
        cov = rng.uniform(0.5, 2.0, (K, d))
    else:
        cov = rng.uniform(0.5, 2.0, K)
    return means, cov


def _dense(structure: str, cov: np.ndarray, k: int, d: int) -> np.ndarray:
    return covariance_structure(structure).component_covariance(cov, k, d)


# -- the exact E-step with missing coordinates -------------------------------------------

BACKENDS = ("numpy", "compiled")


def _use_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows with missing values through the NumPy form or the compiled loops (skipped
    when Numba is not installed)."""
    if backend == "compiled" and _missing_kernels.kernels() is None:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr("emkit.families._gaussian_missing._COMPILED", backend == "compiled")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    _use_backend(request.param, monkeypatch)
    return str(request.param)


def test_spd_inverse_matches_lapack() -> None:
    rng = np.random.default_rng(0)
    for s in (1, 2, 5):
        A = rng.normal(size=(30, s, s))
        A = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(s)
        inverse, log_det = spd_inverse(np.moveaxis(A, 0, -1))
        np.testing.assert_allclose(np.moveaxis(inverse, -1, 0), np.linalg.inv(A), atol=1e-9)
        np.testing.assert_allclose(log_det, np.linalg.slogdet(A)[1], rtol=1e-12)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize(
    ("backend", "pattern_rows"),
    [("numpy", 1), ("numpy", 4), ("numpy", 10**9), ("compiled", 32)],
    ids=["numpy-by-pattern", "numpy-mixed", "numpy-by-row", "compiled"],
)
def test_missing_coordinates_are_marginalized_exactly(
    structure: str, backend: str, pattern_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log p(x_obs, k) and E_k[T(x) | x_obs] against scipy, row by row, whether NumPy
    evaluates rows by pattern (common patterns), row by row (rare ones) or mixed, or
    the compiled loops do."""
    _use_backend(backend, monkeypatch)
    monkeypatch.setattr("emkit.families._gaussian_missing._PATTERN_ROWS", pattern_rows)
    rng = np.random.default_rng(3)
    d, K, n = 5, 3, 60
    X = _correlated(n, d) + 2.0
    holes = _holes(X, 0.35)
    family = Gaussian(structure).bind(X, None)
    means, cov = _gaussian_params(structure, d, K, rng)
    params = MixtureParams(np.array([0.2, 0.3, 0.5]), family.params_from_covariances(means, cov))
    model = Mixture(family, missing=True)
    log_prob = model.weighted_log_prob(params)(holes)
    expected = np.empty((n, K))
    first = np.zeros((K, d))
    second = np.zeros((K, d, d))
    for i in range(n):
        o = ~np.isnan(holes[i])
        m = ~o
        for k in range(K):
            S = _dense(structure, cov, k, d)
            expected[i, k] = np.log(params.weights[k]) + stats.multivariate_normal(
                means[k][o], S[np.ix_(o, o)]
            ).logpdf(holes[i, o])
    resp = np.exp(expected - logsumexp(expected, axis=1)[:, None])
    for i in range(n):
        o = ~np.isnan(holes[i])
        m = ~o
        for k in range(K):
            S = _dense(structure, cov, k, d)
            x = holes[i].copy()
            B = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            x[m] = means[k][m] + B @ (holes[i, o] - means[k][o])
            C = np.zeros((d, d))
            C[np.ix_(m, m)] = S[np.ix_(m, m)] - B @ S[np.ix_(o, m)]
            xc = x - family.shift
            first[k] += resp[i, k] * xc
            second[k] += resp[i, k] * (np.outer(xc, xc) + C)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-10, atol=1e-10)
    got = model.expectation(params)(holes, None)
    assert got.loglik == pytest.approx(logsumexp(expected, axis=1).sum(), rel=1e-12)
    imputed = model.impute(params)(holes)
    conditional = np.einsum("nk,kd->nd", resp, np.zeros((K, d)))  # filled below
    for i in range(n):
        o = ~np.isnan(holes[i])
        m = ~o
        for k in range(K):
            S = _dense(structure, cov, k, d)
            B = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            conditional[i, m] += resp[i, k] * (means[k][m] + B @ (holes[i, o] - means[k][o]))
        conditional[i, o] = holes[i, o]
    np.testing.assert_allclose(imputed, conditional, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.nk, resp.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(got.sum_t[:, :d], first, rtol=1e-9, atol=1e-9)
    if structure == "full":
        i, j = np.triu_indices(d)
        np.testing.assert_allclose(got.sum_t[:, d:], second[:, i, j], rtol=1e-9, atol=1e-9)
    elif structure == "tied":
        np.testing.assert_allclose(got.shared.reshape(d, d), second.sum(axis=0), rtol=1e-9)
    elif structure == "diag":
        np.testing.assert_allclose(got.sum_t[:, d:], np.diagonal(second, 0, 1, 2), rtol=1e-9)
    else:
        np.testing.assert_allclose(got.sum_t[:, d], np.trace(second, 0, 1, 2), rtol=1e-9)


@pytest.mark.parametrize("presorted", [True, False])
def test_rows_are_grouped_alike_by_code_and_by_bytes(presorted: bool) -> None:
    """The float code of a pattern (up to 47 columns) and its packed bytes (any number)
    group the rows the same way, whether or not a fit sorted them first."""
    rng = np.random.default_rng(0)
    observed = rng.random((500, 10)) > 0.3
    if presorted:
        missing = ~observed
        observed = observed[np.lexsort((*np.packbits(missing, axis=1).T[::-1], missing.sum(1)))]
    by_code, by_bytes = list(_groups(observed)), list(_groups_by_bytes(~observed))
    assert len(by_code) == len(by_bytes) > 3
    everything = np.arange(observed.shape[0])
    for (rows, pattern, coords), (rows_b, pattern_b, coords_b) in zip(
        by_code, by_bytes, strict=True
    ):
        np.testing.assert_array_equal(everything[rows], everything[rows_b])
        np.testing.assert_array_equal(pattern, pattern_b)
        np.testing.assert_array_equal(coords, coords_b)


@pytest.mark.usefixtures("backend")
def test_wide_tables_with_missing_values_fit() -> None:
    """More than 47 columns: patterns are grouped through their bytes."""
    X = _correlated(400, 60)
    holes = _holes(X, 0.1)
    model = GaussianMixture(
        2, covariance_type="diag", max_iter=5, tol=0, monotonicity="raise", random_state=0
    ).fit(holes)
    assert np.isfinite(model.score(holes))
    filled = model.impute(holes)
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(holes)], holes[~np.isnan(holes)])


@pytest.mark.parametrize("structure", STRUCTURES)
def test_common_and_rare_patterns_give_the_same_e_step(
    structure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dominant pattern beside many rare ones, in shuffled rows: every pattern through
    the stacked products of its bucket, every row by itself, the default split and the
    compiled loops give the same log-densities, statistics and imputations."""
    rng = np.random.default_rng(7)
    d, K, n = 6, 3, 900
    X = _correlated(n, d)
    holes = X.copy()
    holes[:600, 1] = np.nan  # one pattern with 600 rows
    rare = rng.random((300, d)) < 0.35
    rare[:, 0] = False  # every row keeps column 0
    holes[600:][rare] = np.nan
    holes = holes[rng.permutation(n)]
    family = Gaussian(structure).bind(X, None)
    means, cov = _gaussian_params(structure, d, K, rng)
    params = MixtureParams(np.full(K, 1.0 / K), family.params_from_covariances(means, cov))
    model = Mixture(family, missing=True)
    results = []
    routes = [("numpy", 1), ("numpy", 32), ("numpy", 10**9), ("compiled", 32)]
    if _missing_kernels.kernels() is None:
        routes.pop()
    for backend, pattern_rows in routes:
        monkeypatch.setattr("emkit.families._gaussian_missing._COMPILED", backend == "compiled")
        monkeypatch.setattr("emkit.families._gaussian_missing._PATTERN_ROWS", pattern_rows)
        got = model.expectation(params)(holes, None)
        results.append(
            (
                model.weighted_log_prob(params)(holes),
                got.sum_t,
                got.shared,
                np.array([got.loglik]),
                model.impute(params)(holes),
            )
        )
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_without_missing_values_the_fit_is_the_complete_data_fit(structure: str) -> None:
    X = _correlated(300)
    rng = np.random.default_rng(0)
    family = Gaussian(structure).bind(X, None)
    means, cov = _gaussian_params(structure, X.shape[1], 2, rng)
    params = MixtureParams(np.array([0.5, 0.5]), family.params_from_covariances(means, cov))
    plain = Mixture(family).expectation(params)(X, None)
    flagged = Mixture(family, missing=True).expectation(params)(X, None)
    assert plain.loglik == flagged.loglik
    np.testing.assert_array_equal(plain.sum_t, flagged.sum_t)
    np.testing.assert_array_equal(plain.shared, flagged.shared)
    fitted = GaussianMixture(2, covariance_type=structure, random_state=0).fit(X)
    again = GaussianMixture(2, covariance_type=structure, random_state=0).fit(X.copy())
    np.testing.assert_array_equal(fitted.means_, again.means_)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    structure=st.sampled_from(STRUCTURES),
    fraction=st.floats(0.05, 0.5),
    seed=st.integers(0, 10_000),
    K=st.integers(1, 3),
    compiled=st.booleans() if _missing_kernels.kernels() is not None else st.just(False),
)
def test_loglik_never_decreases_with_missing_values(
    structure: str, fraction: float, seed: int, K: int, compiled: bool
) -> None:
    holes = _holes(_correlated(120, 3, seed), fraction, seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("emkit.families._gaussian_missing._COMPILED", compiled)
        model = GaussianMixture(
            K,
            covariance_type=structure,
            tol=0,
            max_iter=15,
            reg_covar=0.0 if structure != "full" else 1e-6,
            monotonicity="raise",
            random_state=seed,
        ).fit(holes)
    assert np.isfinite(model.lower_bounds_).all()


def test_compiled_algebra_inverts_every_block_even_past_the_float_range() -> None:
    """The loops' (pattern, component) algebra against LAPACK, on tiles with padding,
    for determinants that overflow float64 as a product of pivots (1e40^9)."""
    kernels = _missing_kernels.kernels()
    if kernels is None:
        pytest.skip("Numba is not installed")
    rng = np.random.default_rng(5)
    d, K, s, n_p = 12, 3, 9, 21  # 21 patterns: two tiles, the second one padded
    A = rng.normal(size=(K, d, d))
    P = (A @ np.swapaxes(A, 1, 2) + d * np.eye(d)) * 1e40
    means = rng.normal(size=(K, d))
    P_mu = np.einsum("kab,kb->ka", P, means)
    coords = np.sort(np.array([rng.choice(d, s, replace=False) for _ in range(n_p)]), axis=1)
    parameters = tuple(np.ascontiguousarray(a) for a in (P.transpose(1, 2, 0), P_mu.T, means.T))
    C, b, mu_m, const = _compiled_algebra(kernels, parameters, coords)

    def per_pattern(tiled: np.ndarray) -> np.ndarray:  # (n_tiles, ..., tile K) -> (n_p, K, ...)
        moved = np.moveaxis(tiled, -1, 1)
        return moved.reshape(-1, K, *moved.shape[2:])[:n_p]

    blocks = P[:, coords.T[:, None, :], coords.T[None, :, :]].transpose(3, 0, 1, 2)
    np.testing.assert_allclose(per_pattern(C), np.linalg.inv(blocks), rtol=1e-9, atol=0)
    mu = means[:, coords].transpose(1, 0, 2)  # (n_p, K, s)
    Pmm_mu = np.einsum("pkij,pkj->pki", blocks, mu)
    P_mu_m = P_mu[:, coords].transpose(1, 0, 2)
    np.testing.assert_allclose(per_pattern(mu_m), mu)
    np.testing.assert_allclose(per_pattern(b), P_mu_m - Pmm_mu, rtol=1e-9, atol=1e-9 * 1e40)
    log_det = np.linalg.slogdet(blocks)[1]
    assert (log_det > 700).all()  # the product of the pivots overflows
    quadratic = np.einsum("pki,pki->pk", mu, Pmm_mu - 2.0 * P_mu_m)
    expected = -0.5 * (quadratic + log_det - s * np.log(2 * np.pi))
    np.testing.assert_allclose(per_pattern(const), expected, rtol=1e-9)


def test_without_numba_the_numpy_form_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numba is optional: without it the loops are None and a fit with missing values
    runs the NumPy form."""
    monkeypatch.setitem(__import__("sys").modules, "numba", None)  # import fails
    _missing_kernels.kernels.cache_clear()
    holes = _holes(_correlated(200), 0.2)
    settings = {"max_iter": 5, "tol": 0, "random_state": 0, "monotonicity": "raise"}
    try:
        assert _missing_kernels.kernels() is None
        without = GaussianMixture(2, **settings).fit(holes)
        monkeypatch.setattr("emkit.families._gaussian_missing._COMPILED", False)
        numpy_form = GaussianMixture(2, **settings).fit(holes)
        np.testing.assert_array_equal(without.means_, numpy_form.means_)
        assert without.lower_bound_ == numpy_form.lower_bound_
    finally:
        _missing_kernels.kernels.cache_clear()


@pytest.mark.usefixtures("backend")
def test_parameters_approach_the_complete_fit_as_missingness_shrinks() -> None:
    X = _correlated(4000, 4, seed=5)
    reference = GaussianMixture(2, random_state=0, tol=1e-10, max_iter=500).fit(X)
    order = np.argsort(reference.means_[:, 0])
    errors = []
    for fraction in (0.4, 0.15, 0.03, 0.005):
        model = GaussianMixture(
            2,
            means_init=reference.means_,
            weights_init=reference.weights_,
            precisions_init=reference.precisions_,
            tol=1e-10,
            max_iter=500,
        ).fit(_holes(X, fraction, seed=7))
        mine = np.argsort(model.means_[:, 0])
        errors.append(
            np.abs(model.means_[mine] - reference.means_[order]).max()
            + np.abs(model.covariances_[mine] - reference.covariances_[order]).max()
        )
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.02


@pytest.mark.usefixtures("backend")
def test_conditional_mean_imputation_beats_column_means() -> None:
    rng = np.random.default_rng(0)
    d = 5
    scales = np.arange(1.0, d + 1.0)
    cov = (0.9 + 0.1 * np.eye(d)) * np.outer(scales, scales)  # correlation 0.9
    X = rng.multivariate_normal(np.arange(d, dtype=float), cov, 3000)
    holes = _holes(X, 0.2, seed=2)
    model = GaussianMixture(1, random_state=0).fit(holes)
    imputed = model.impute(holes)
    missing = np.isnan(holes)
    np.testing.assert_array_equal(imputed[~missing], holes[~missing])
    column_means = np.where(missing, np.nanmean(holes, axis=0), holes)
    rmse = np.sqrt(np.mean((imputed[missing] - X[missing]) ** 2))
    baseline = np.sqrt(np.mean((column_means[missing] - X[missing]) ** 2))
    assert rmse < 0.6 * baseline, (rmse, baseline)
    # with one component it is the Gaussian conditional mean
    i = int(np.argmax(missing.any(axis=1)))
    o, m = ~missing[i], missing[i]
    S, mu = model.covariances_[0], model.means_[0]
    expected = mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(S[np.ix_(o, o)], holes[i, o] - mu[o])
    np.testing.assert_allclose(imputed[i, m], expected, rtol=1e-10)


@pytest.mark.usefixtures("backend")
def test_predictions_accept_missing_values() -> None:
    X = _correlated(500)
    holes = _holes(X, 0.3)
    model = GaussianMixture(2, random_state=0).fit(X)
    proba = model.predict_proba(holes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(model.score_samples(holes)).all()
    assert model.predict(holes).shape == (500,)
    # a row with one observed value: its marginal density
    row = np.full((1, X.shape[1]), np.nan)
    row[0, 2] = 1.5
    expected = logsumexp(
        [
            np.log(w) + stats.norm(mu[2], np.sqrt(S[2, 2])).logpdf(1.5)
            for w, mu, S in zip(model.weights_, model.means_, model.covariances_, strict=True)
        ]
    )
    assert model.score_samples(row)[0] == pytest.approx(expected, rel=1e-12)


def test_rows_with_nothing_observed_are_rejected() -> None:
    X = _correlated(50)
    X[7] = np.nan
    with pytest.raises(InputError, match=r"1 row\(s\) with every value missing \(first at row 7\)"):
        GaussianMixture(2).fit(X)
    model = GaussianMixture(2, random_state=0).fit(_correlated(50))
    with pytest.raises(InputError, match="every value missing"):
        model.predict(X)
    with pytest.raises(InputError, match="every value missing"):
        MixtureModel(Poisson(), 2).fit(np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 1.0]]))
    with pytest.raises(InputError, match="contains infinity"):
        GaussianMixture(2).fit(np.array([[1.0, np.inf], [np.nan, 1.0], [2.0, 2.0]]))
    with pytest.raises(InputError, match="Column 1 of X has no observed value"):
        GaussianMixture(1).fit(np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]]))


@pytest.mark.usefixtures("backend")
def test_integer_weights_equal_repeated_rows_with_missing_values() -> None:
    holes = _holes(_correlated(200), 0.25)
    w = np.random.default_rng(0).integers(0, 3, 200)
    common = {"random_state": 0, "tol": 1e-6, "max_iter": 300}
    weighted = GaussianMixture(2, **common).fit(holes, sample_weight=w)
    start = {
        "weights_init": weighted.weights_,
        "means_init": weighted.means_,
        "precisions_init": weighted.precisions_,
    }
    a = GaussianMixture(2, tol=0, max_iter=5, **start).fit(holes, sample_weight=w)
    b = GaussianMixture(2, tol=0, max_iter=5, **start).fit(np.repeat(holes, w, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-10)


# -- families with independent columns: missing columns drop out -------------------------


def _mixed_table(n: int, seed: int = 0) -> tuple[np.ndarray, Product]:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    X = np.column_stack(
        [
            rng.normal(3 * z, 1.0),
            rng.normal(-2 * z, 1.0),
            rng.poisson(1 + 4 * z),
            rng.random(n) < 0.2 + 0.6 * z,
            rng.choice(3, n),
            rng.exponential(1 + z),
            rng.gamma(2 + 3 * z, 1.0),
            rng.beta(2 + 3 * z, 2.0),
            rng.lognormal(z, 0.5),
        ]
    ).astype(np.float64)
    family = Product(
        {
            "g": ([0, 1], Gaussian("full")),
            "p": ([2], Poisson()),
            "b": ([3], Bernoulli()),
            "c": ([4], Categorical()),
            "e": ([5], Exponential()),
            "ga": ([6], Gamma()),
            "be": ([7], Beta()),
            "ln": ([8], LogNormal("diag")),
        }
    )
    return X, family


def _column_log_density(model: MixtureModel, j: int, k: int, x: float) -> float:
    p = model.component_params_
    if j in (0, 1):
        return np.nan  # the Gaussian block is checked jointly below
    if j == 2:
        return stats.poisson(p["p"]["rates"][k, 0]).logpmf(x)
    if j == 3:
        return stats.bernoulli(p["b"]["probabilities"][k, 0]).logpmf(x)
    if j == 4:
        return np.log(p["c"]["probabilities"][0][k, int(x)])
    if j == 5:
        return stats.expon(scale=1 / p["e"]["rates"][k, 0]).logpdf(x)
    if j == 6:
        return stats.gamma(p["ga"]["shapes"][k, 0], scale=1 / p["ga"]["rates"][k, 0]).logpdf(x)
    if j == 7:
        return stats.beta(p["be"]["a"][k, 0], p["be"]["b"][k, 0]).logpdf(x)
    mu, var = p["ln"]["log_means"][k, 0], p["ln"]["log_covariances"][k, 0]
    return stats.lognorm(np.sqrt(var), scale=np.exp(mu)).logpdf(x)


@pytest.mark.usefixtures("backend")
def test_product_rows_with_missing_columns_use_the_observed_ones() -> None:
    X, family = _mixed_table(600)
    holes = _holes(X, 0.25)
    model = MixtureModel(family, 2, random_state=0, monotonicity="raise", max_iter=30).fit(holes)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)
    got = model.score_samples(holes[:40])
    g = model.component_params_["g"]
    for i in range(40):
        terms = []
        for k in range(2):
            total = np.log(model.weights_[k])
            o = ~np.isnan(holes[i, :2])
            if o.any():
                total += stats.multivariate_normal(
                    g["means"][k][o], g["covariances"][k][np.ix_(o, o)]
                ).logpdf(holes[i, :2][o])
            for j in range(2, 9):
                if not np.isnan(holes[i, j]):
                    total += _column_log_density(model, j, k, holes[i, j])
            terms.append(total)
        assert got[i] == pytest.approx(logsumexp(terms), rel=1e-9, abs=1e-9)
    imputed = model.impute(holes)
    missing = np.isnan(holes)
    np.testing.assert_array_equal(imputed[~missing], holes[~missing])
    assert np.isin(imputed[:, 4], [0, 1, 2]).all()  # categories: the most probable one
    assert ((imputed[:, 3] >= 0) & (imputed[:, 3] <= 1)).all()


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(
    ("family", "draw"),
    [
        (Poisson(), lambda rng, n: rng.poisson([2.0, 7.0], (n, 2))),
        (Bernoulli(), lambda rng, n: rng.random((n, 2)) < [0.3, 0.8]),
        (Categorical(), lambda rng, n: rng.choice(4, (n, 2))),
        (Exponential(), lambda rng, n: rng.exponential([1.0, 3.0], (n, 2))),
        (Gamma(), lambda rng, n: rng.gamma([2.0, 5.0], 1.0, (n, 2))),
        (Beta(), lambda rng, n: rng.beta([2.0, 5.0], 3.0, (n, 2))),
        (LogNormal("full"), lambda rng, n: rng.lognormal([0.0, 1.0], 0.5, (n, 2))),
        (Gaussian("spherical"), lambda rng, n: rng.normal([0.0, 3.0], 1.0, (n, 2))),
    ],
)
def test_every_family_fits_missing_values_monotonically(family, draw) -> None:
    rng = np.random.default_rng(0)
    X = np.asarray(draw(rng, 300), dtype=np.float64)
    holes = _holes(X, 0.3)
    model = MixtureModel(family, 2, random_state=0, monotonicity="raise", max_iter=400)
    model.fit(holes)
    assert np.isfinite(model.score_samples(holes)).all()
    imputed = model.impute(holes)
    assert np.isfinite(imputed).all()
    # one component: a missing entry's imputation is the column's fitted mean
    one = MixtureModel(family, 1, monotonicity="raise").fit(holes)
    row = holes[np.isnan(holes[:, 0]) & ~np.isnan(holes[:, 1])][:1]
    if isinstance(family, Categorical):
        probabilities = one.probabilities_[0][0]
        assert one.impute(row)[0, 0] == np.argmax(probabilities)
    elif not isinstance(family, LogNormalFamily):
        sample, _ = one.sample(100_000)
        assert one.impute(row)[0, 0] == pytest.approx(sample[:, 0].mean(), rel=0.05, abs=0.02)


def test_multinomial_rejects_missing_counts() -> None:
    X = np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 0.0]])
    with pytest.raises(InputError, match=r"column 0 is missing \(NaN\) in row 1, but the "):
        MixtureModel(Multinomial(), 1).fit(X)


# -- known labels (semi-supervised) -----------------------------------------------------


def test_fully_labelled_fit_is_the_supervised_estimate() -> None:
    X = _correlated(400)
    y = (X[:, 0] > 2).astype(int)
    model = GaussianMixture(2, semi_supervised=True, tol=0, max_iter=3, reg_covar=0.0)
    model.fit(X, y)
    for k in range(2):
        rows = X[y == k]
        np.testing.assert_allclose(model.means_[k], rows.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(
            model.covariances_[k], np.cov(rows, rowvar=False, bias=True), rtol=1e-10
        )
        assert model.weights_[k] == pytest.approx(np.mean(y == k), rel=1e-12)
    np.testing.assert_array_equal(model.predict_proba(X).shape, (400, 2))


@pytest.mark.parametrize(
    ("family", "draw"),
    [
        (Poisson(), lambda rng, z: rng.poisson(1 + 5 * z[:, None], (len(z), 2))),
        (Bernoulli(), lambda rng, z: rng.random((len(z), 2)) < 0.2 + 0.6 * z[:, None]),
        (
            Categorical(),
            lambda rng, z: np.where(rng.random((len(z), 2)) < 0.85, 2 * z[:, None], 1),
        ),
        (Gamma(), lambda rng, z: rng.gamma(2 + 3 * z[:, None], 1.0, (len(z), 2))),
        (Gaussian("diag"), lambda rng, z: rng.normal(3 * z[:, None], 1.0, (len(z), 2))),
        (
            Product({"size": ([0], Gaussian()), "visits": ([1], Poisson())}),
            lambda rng, z: np.column_stack([rng.normal(3 * z, 1.0), rng.poisson(1 + 4 * z)]),
        ),
    ],
)
def test_labelled_rows_keep_their_component_for_every_family(family, draw) -> None:
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 400)
    X = np.asarray(draw(rng, z), dtype=np.float64)
    y = np.where(rng.random(400) < 0.3, z, -1)
    model = MixtureModel(family, 2, semi_supervised=True, monotonicity="raise", random_state=0)
    model.fit(X, y)
    # the objective is the observed-data log-likelihood: log p(x, y) for labelled rows
    mix = Mixture(model.family_)
    log_joint = mix.weighted_log_prob(model.params_)(X)
    labelled = y >= 0
    expected = (
        log_joint[labelled, y[labelled]].sum() + logsumexp(log_joint[~labelled], axis=1).sum()
    ) / 400
    final = MixtureModel(family, 2, semi_supervised=True, warm_start=True, tol=0, max_iter=1)
    final.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    final.fit(X, y)
    assert final.lower_bounds_[0] == pytest.approx(expected, rel=1e-10)
    # the components follow the labels
    assert np.mean(model.predict(X) == z) > 0.8


def test_labels_are_checked_and_ignored_unless_semi_supervised() -> None:
    X = _correlated(100)
    y = np.zeros(100, dtype=int)
    plain = GaussianMixture(2, random_state=0).fit(X)
    ignored = GaussianMixture(2, random_state=0).fit(X, np.arange(100))
    np.testing.assert_array_equal(plain.means_, ignored.means_)
    semi = GaussianMixture(2, semi_supervised=True, random_state=0)
    with pytest.raises(InputError, match=r"y\[3\] = 2 is not a component index"):
        semi.fit(X, np.where(np.arange(100) == 3, 2, y))
    with pytest.raises(InputError, match=r"y must have shape \(100,\)"):
        semi.fit(X, y[:10])
    with pytest.raises(InputError, match="integer component indices"):
        semi.fit(X, y + 0.5)
    with pytest.raises(InputError, match="semi_supervised must be True or False"):
        GaussianMixture(2, semi_supervised="yes").fit(X, y)
    # all -1: nothing known, the unsupervised fit
    none = GaussianMixture(2, semi_supervised=True, random_state=0).fit(X, y - 1)
    np.testing.assert_array_equal(none.means_, plain.means_)


@pytest.mark.usefixtures("backend")
def test_labels_and_missing_values_together() -> None:
    X = _correlated(600)
    z = (X[:, 0] > 2).astype(int)
    holes = _holes(X, 0.3)
    y = np.where(np.random.default_rng(0).random(600) < 0.2, z, -1)
    model = GaussianMixture(2, semi_supervised=True, monotonicity="raise", random_state=0)
    model.fit(holes, y)
    assert np.all(np.diff(model.lower_bounds_) >= 0)
    assert np.mean(model.predict(holes) == z) > 0.9


# -- hard EM -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family",
    [Gaussian("full"), Gaussian("spherical"), Poisson(), Categorical(), Gamma()],
)
def test_hard_em_objective_is_the_classification_likelihood(family) -> None:
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, 500)
    if isinstance(family, Categorical):
        X = np.column_stack([z, (z + rng.integers(0, 2, 500)) % 3]).astype(float)
    elif isinstance(family, Poisson | Gamma):
        X = rng.gamma(1 + 4 * z[:, None], 1.0, (500, 2))
        X = np.round(X) if isinstance(family, Poisson) else X + 1e-3
    else:
        X = rng.normal(3 * z[:, None], 1.0, (500, 2))
    model = MixtureModel(family, 3, e_step="hard", monotonicity="raise", tol=0, max_iter=30)
    model.set_params(random_state=1).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)
    # the objective: sum_n max_k log(pi_k p(x_n | k)), at the parameters of the last E-step
    again = MixtureModel(family, 3, e_step="hard", warm_start=True, tol=0, max_iter=1)
    again.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    again.fit(X)
    log_joint = Mixture(model.family_).weighted_log_prob(model.params_)(X)
    assert again.lower_bounds_[0] == pytest.approx(log_joint.max(axis=1).mean(), rel=1e-10)


def test_hard_em_moves_every_row_wholly() -> None:
    X = _correlated(300)
    model = GaussianMixture(2, e_step="hard", random_state=0, tol=0, max_iter=20).fit(X)
    soft = GaussianMixture(2, random_state=0, tol=0, max_iter=20).fit(X)
    labels = model.predict(X)
    # at a fixed point of classification EM, each mean is its cluster's average
    for k in range(2):
        np.testing.assert_allclose(model.means_[k], X[labels == k].mean(axis=0), rtol=1e-10)
    assert model.lower_bound_ <= soft.lower_bound_ + 1e-12
    allowed = (
        r"e_step must be one of 'exact', 'hard', 'monte-carlo', 'stochastic' or "
        r"emkit\.inference\.MonteCarlo\(\.\.\.\) options, got "
    )
    with pytest.raises(InputError, match=allowed + r"1\."):
        GaussianMixture(2, e_step=1).fit(X)
    with pytest.raises(InputError, match=allowed + r"'soft'"):
        GaussianMixture(2, e_step="soft").fit(X)


def test_car_truck_lecture_example_matches_direct_maximization() -> None:
    """Seed 003: vehicle lengths, the type known for some vehicles; weights (0.6, 0.4) and
    standard deviations (1, 2) known, the two mean lengths estimated by EM with labelled
    rows weighted 1 (equations 29-33), equal to maximizing the observed-data
    log-likelihood (equations 10-11) directly."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    n = 400
    truck = rng.random(n) < 0.4
    length = np.where(truck, rng.normal(10.0, 2.0, n), rng.normal(5.0, 1.0, n))
    known = rng.random(n) < 0.3
    y = np.where(known, truck.astype(int), -1)
    pi, sd = np.array([0.6, 0.4]), np.array([1.0, 2.0])

    def negative_loglik(mu: np.ndarray) -> float:
        log_joint = np.log(pi) + stats.norm(mu, sd).logpdf(length[:, None])  # (n, 2)
        labelled = log_joint[known, y[known]].sum()
        return -(labelled + logsumexp(log_joint[~known], axis=1).sum())

    direct = minimize(negative_loglik, x0=[4.0, 11.0], method="BFGS", options={"gtol": 1e-10})
    model = MixtureModel(
        Gaussian("diag"),
        2,
        semi_supervised=True,
        fixed={"weights": pi, "covariances": (sd**2)[:, None]},
        tol=1e-15,
        max_iter=2000,
        monotonicity="raise",
    ).fit(length[:, None], y)
    np.testing.assert_allclose(model.means_.ravel(), direct.x, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.weights_, pi)
    np.testing.assert_array_equal(model.covariances_.ravel(), sd**2)
    assert model.lower_bound_ * n == pytest.approx(-direct.fun, rel=1e-10)
    # only the two means are free parameters
    assert model._n_parameters() == 2


@pytest.mark.parametrize("estimator", [MixtureOfPPCA, MixtureOfFactorAnalyzers])
def test_hard_em_for_the_factor_mixtures(estimator) -> None:
    rng = np.random.default_rng(0)
    X = np.vstack(
        [rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5)) + c for c in (0.0, 6.0, -6.0)]
    )
    X += 0.1 * rng.normal(size=X.shape)
    model = estimator(3, n_factors=2, e_step="hard", monotonicity="raise", tol=0, max_iter=25)
    model.set_params(random_state=0).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)
    # log p(x) >= max_k log p(x, k), and the last M-step only raised the latter
    assert model.lower_bound_ <= model.score(X) + 1e-12
    # at the last E-step every row went wholly to one cluster: its mass is a count
    labels = model.predict(X)
    np.testing.assert_allclose(
        np.sort(model.weights_), np.sort(np.bincount(labels, minlength=3) / len(X)), atol=0.01
    )


def test_kmeans_fixed_point_is_a_hard_em_fixed_point() -> None:
    """KMeans is hard EM with equal weights and one shared spherical covariance: a
    converged k-means is a fixed point of MixtureModel(e_step="hard") with those known."""
    from emkit import KMeans

    X = _correlated(600, 3, seed=4)
    km = KMeans(3, n_init=1, random_state=0, tol=0).fit(X)
    model = MixtureModel(
        Gaussian("spherical"),
        3,
        e_step="hard",
        fixed={"weights": np.full(3, 1 / 3), "covariances": np.full(3, 1.0)},
        init_params="random_from_data",
        random_state=0,
        max_iter=200,
        tol=0,
        monotonicity="raise",
    ).fit(X)
    # started anywhere, hard EM lands on a k-means fixed point...
    again = KMeans(3, init=model.means_, n_init=1, tol=0).fit(X)
    np.testing.assert_allclose(again.cluster_centers_, model.means_, rtol=1e-10, atol=1e-10)
    assert again.n_iter_ <= 2
    # ... and from k-means' centers, hard EM stays there
    fixed = model.set_params(warm_start=True, max_iter=5)
    fixed.params_ = fixed.params_._replace(
        components=fixed.family_.params_from_covariances(km.cluster_centers_, np.ones(3))
    )
    fixed.fit(X)
    np.testing.assert_allclose(fixed.means_, km.cluster_centers_, rtol=1e-10, atol=1e-10)
