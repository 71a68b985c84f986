"""The compiled one-pass E-step of full-covariance mixtures (Numba) against the NumPy
route it stands in for."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from emkit import GaussianMixture
from emkit._compiled_modules import compiled_module
from emkit.families.gaussian import Gaussian
from emkit.models import mixture
from emkit.models._fused_kernels import LAYOUTS, Tiling, gaussian_e_step, kernels, tiling
from emkit.models._softmax_kernels import constants
from emkit.models.mixing import Hard
from emkit.models.mixture import Mixture, MixtureParams, MixtureStats

pytest.importorskip("numba")


def random_model(
    rng: np.random.Generator, d: int, K: int, X: np.ndarray, structure: str = "full"
) -> tuple[Mixture, MixtureParams]:
    """A mixture of Gaussians of a covariance ``structure`` bound to ``X``, with random
    parameters."""
    family = Gaussian(structure).bind(X, None)
    layout = {"VVE": "full", "EEI": "diag"}.get(structure, structure)
    means = X[rng.choice(len(X), K)] + rng.normal(0.0, 0.1, (K, d))
    A = rng.normal(0.0, 0.5, (K, d, d))
    cov = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(d)
    if layout in ("diag", "spherical"):
        cov = np.diagonal(cov, axis1=1, axis2=2).copy()
    if layout == "spherical":
        cov = cov.mean(axis=1)
    if layout == "tied":
        cov = cov[0]
    weights = rng.dirichlet(np.ones(K))
    return Mixture(family), MixtureParams(weights, family.params_from_covariances(means, cov))


def both_routes(
    model: Mixture,
    params: MixtureParams,
    X: np.ndarray,
    weights: np.ndarray | None,
    monkeypatch: pytest.MonkeyPatch,
    labels: np.ndarray | None = None,
) -> tuple[MixtureStats, MixtureStats]:
    """The E-step's statistics of ``X`` with the compiled pass allowed, then without."""
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    out = []
    for fused in (True, False):
        monkeypatch.setattr(mixture, "_FUSED", fused)
        out.append(model.expectation(params)(X, weights, labels=labels))
    return out[0], out[1]


def assert_same(a: MixtureStats, b: MixtureStats, rtol: float) -> None:
    """Equal statistics to ``rtol`` of the largest one (the sums of centred x are
    near 0, where the round-off of the terms they cancel, ~ the sums of x x^T, shows),
    and the log-likelihood to ``rtol``."""
    np.testing.assert_allclose(a.nk, b.nk, rtol=rtol, atol=rtol * np.max(b.nk))
    np.testing.assert_allclose(a.sum_t, b.sum_t, rtol=0, atol=rtol * np.max(np.abs(b.sum_t)))
    assert a.loglik == pytest.approx(b.loglik, rel=rtol)
    assert a.weight == b.weight


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2500),
    d=st.integers(1, 6),
    K=st.integers(1, 7),
    weighted=st.booleans(),
    single=st.booleans(),
    structure=st.sampled_from(["full", "diag", "spherical", "VVE", "EEI"]),
    seed=st.integers(0, 2**16),
)
def test_fused_e_step_matches_numpy(
    n: int, d: int, K: int, weighted: bool, single: bool, structure: str, seed: int
) -> None:
    """Any shape (whole tiles of rows and a remainder), sample weights, float64 and
    float32, each layout of the statistics (mclust's models take their layout's): the
    same N_k, sums of x and x x^T (x**2, ||x||^2) and log-likelihood, to 1e-12 in float64,
    to float32's round-off in float32 (both routes round there, differently)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 2.0, (n, d))
    model, params = random_model(rng, d, K, X, structure)
    dtype = np.float32 if single else np.float64
    model = Mixture(model.family, dtype=dtype)
    weights = rng.uniform(0.0, 3.0, n) if weighted else None
    with pytest.MonkeyPatch.context() as monkeypatch:
        fused, plain = both_routes(model, params, X.astype(dtype), weights, monkeypatch)
    assert fused.sum_t.dtype == fused.nk.dtype == np.float64
    assert_same(fused, plain, 2e-4 if single else 1e-12)


@pytest.mark.parametrize("order", ["C", "F", "strided"])
@pytest.mark.parametrize(
    ("data", "work"), [("float64", "float64"), ("float64", "float32"), ("float32", "float32")]
)
def test_fused_pass_centres_raw_rows_of_any_layout(
    order: str, data: str, work: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass reads the raw rows (C or Fortran order, or a strided view), centres them
    in their own precision and rounds to the working one, as the general route's
    ``prepare``: the same statistics; and it reports the largest centred |x|."""
    rng = np.random.default_rng(4)
    X = rng.normal(3.0, 2.0, (2000, 4)).astype(data)
    if order == "F":
        X = np.asfortranarray(X)
    elif order == "strided":
        X = np.repeat(X, 2, axis=1)[:, ::2]
    model, params = random_model(rng, 4, 3, X)
    model = Mixture(model.family, dtype=work)
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    step = model._fused_step(params)
    assert step is not None and step(X, None, None) is not None  # the pass took it
    fused, plain = both_routes(model, params, X, None, monkeypatch)
    assert_same(fused, plain, 2e-4 if work == "float32" else 1e-12)
    family = model.family
    eta = np.zeros((3, 1 + family.n_stats), dtype=work)
    centred = family.prepare(X, work)
    reach = gaussian_e_step(X, family.shift, eta, "full", -60.0, None)[3]
    assert reach == np.abs(centred).max()


def test_the_fused_pass_runs_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact EM on a Gaussian family takes it; small blocks, hard EM and the tied
    structure (a row term) do not."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    model, params = random_model(rng, 3, 4, X)
    step = model._fused_step(params)
    assert step is not None
    assert step(X, None, None) is None  # 1200 log-densities: below the size it pays at
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    assert isinstance(step(X, None, None), MixtureStats)
    assert Mixture(model.family, assign=Hard())._fused_step(params) is None
    tied, tied_params = random_model(rng, 3, 4, X, "tied")  # a row term: not fused
    tied_step = tied._fused_step(tied_params)
    assert tied_step is not None and tied_step(X, None, None) is None
    monkeypatch.setattr(mixture, "_FUSED", False)
    assert model._fused_step(params) is None


def test_rows_far_out_known_labels_and_whitened_parameters_take_the_general_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block with a row far beyond the training data, one with known labels, and
    parameters whose expanded form would lose digits: the general route's statistics,
    finite."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 2))
    model, params = random_model(rng, 2, 3, X)
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    step = model._fused_step(params)
    assert step is not None
    far = X.copy()
    far[7] = 1e200
    assert step(far, None, None) is None
    for odd in (np.nan, np.inf):  # not finite: left to the general route too
        bad = X.copy()
        bad[5, 1] = odd
        assert step(bad, None, None) is None
    fused, plain = both_routes(model, params, far, None, monkeypatch)
    assert np.isfinite(fused.loglik) is np.isfinite(plain.loglik)
    np.testing.assert_array_equal(fused.nk, plain.nk)
    labels = np.full(len(X), -1)
    labels[3] = 1
    fused, plain = both_routes(model, params, X, None, monkeypatch, labels=labels)
    np.testing.assert_array_equal(fused.sum_t, plain.sum_t)
    # clusters 2000 apart with spread 0.01: float32's expanded form would lose every digit
    tight = np.r_[rng.normal(-1e3, 1e-2, (200, 2)), rng.normal(1e3, 1e-2, (200, 2))]
    family = Gaussian("full").bind(tight, None)
    cov = np.broadcast_to(1e-4 * np.eye(2), (2, 2, 2))
    params = MixtureParams(
        np.array([0.5, 0.5]), family.params_from_covariances(np.array([[-1e3] * 2, [1e3] * 2]), cov)
    )
    natural = family.natural(params.components, np.float32)
    assert natural.exact_form and family.fused_natural(natural) is None


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")  # tol=0
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fits_are_the_same_with_or_without_the_fused_pass(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole fits with sample weights, on one thread and two: the compiled pass changes
    nothing beyond round-off, and the number of threads changes nothing at all."""
    X = blobs(3000, 3, 4, seed=5, spread=2.0).astype(dtype)
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(X))
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    kw = dict(random_state=0, tol=0, max_iter=10, dtype=dtype, chunk_size=700)
    fits = {}
    for fused, threads in ((True, 1), (True, 2), (False, 1)):
        monkeypatch.setattr(mixture, "_FUSED", fused)
        fits[fused, threads] = GaussianMixture(4, n_threads=threads, **kw).fit(X, sample_weight=w)
    one, two, plain = fits[True, 1], fits[True, 2], fits[False, 1]
    np.testing.assert_array_equal(one.lower_bounds_, two.lower_bounds_)
    np.testing.assert_array_equal(one.means_, two.means_)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(one.lower_bounds_, plain.lower_bounds_, rtol=rtol)
    np.testing.assert_allclose(one.means_, plain.means_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(one.covariances_, plain.covariances_, rtol=100 * rtol)


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")  # tol=0
def test_a_float32_fit_without_numba_is_the_compiled_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numba is optional: without it a float32 fit takes the NumPy route (its products and
    softmax) and ends where the compiled pass's fit does, to float32's round-off; ten
    components run the compiled products' blocks of four and a remainder."""
    X = blobs(4000, 5, 10, seed=3, spread=2.0).astype(np.float32)
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    kw = dict(random_state=0, tol=0, max_iter=10, dtype="float32", chunk_size=1500)
    assert tiling(1 + 5 + 15, 10, np.float32).axpy
    compiled = GaussianMixture(10, **kw).fit(X)
    monkeypatch.setitem(sys.modules, "numba", None)  # import fails
    compiled_module.cache_clear()
    mixture._numba_installed.cache_clear()
    try:
        assert kernels() is None and not mixture._numba_installed()
        plain = GaussianMixture(10, **kw).fit(X)
    finally:
        compiled_module.cache_clear()
        mixture._numba_installed.cache_clear()
    np.testing.assert_allclose(compiled.lower_bounds_, plain.lower_bounds_, rtol=1e-5)
    np.testing.assert_allclose(compiled.means_, plain.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compiled.covariances_, plain.covariances_, rtol=1e-3, atol=1e-4)


def test_a_component_of_weight_zero_keeps_its_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """log pi = -inf: its responsibilities are the floor's, as on the NumPy route."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 2))
    model, params = random_model(rng, 2, 3, X)
    params = params._replace(weights=np.array([0.5, 0.5, 0.0]))
    fused, plain = both_routes(model, params, X, None, monkeypatch)
    assert_same(fused, plain, 1e-12)
    assert 0 < fused.nk[2] < 1e-200


def test_tiles_stay_in_cache_and_long_enough() -> None:
    """Rows a tile by the statistics' bytes, twice the rows in float32; the compiled
    products in both dtypes (faster than BLAS on every workload of profile_fused.py);
    BLAS's second product, where a plan asks for it, transposed in float64 where K * S is
    large and always in float32. float32's full covariances: the wider blocks on at least
    768 rows, fewer where S is large (the tile within _WIDE_BYTES, whole vectors)."""
    assert tiling(6, 8, np.float64) == Tiling(2048, False, True, True)  # d = 2: long tiles
    assert tiling(6, 8, np.float32, "diag") == Tiling(4096, True, True, True)
    assert tiling(6, 8, np.float32) == Tiling(4096, True, True, True, True)
    assert tiling(153, 16, np.float64) == Tiling(128, True, True, True)  # d = 16
    assert tiling(153, 16, np.float32, "spherical") == Tiling(256, True, True, True)
    assert tiling(153, 16, np.float32) == Tiling(768, True, True, True, True)
    assert tiling(65, 32, np.float64) == Tiling(252, True, True, True)  # 32d diag
    assert tiling(65, 32, np.float32, "diag") == Tiling(504, True, True, True)
    assert tiling(1 + 24 + 300, 8, np.float32) == Tiling(400, True, True, True, True)
    assert tiling(1 + 64 + 2080, 8, np.float32).rows == 256  # at least twice 128
    rows, transposed, axpy, dots, wide = tiling(45, 8, np.float64)
    assert 128 < rows < 2048 and not transposed and axpy and dots and not wide
    assert tiling(45, 8, np.float32, "diag").rows == 2 * rows


def _random_pass(
    rng: np.random.Generator, n: int, d: int, K: int, layout: str, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows, their shift, natural parameters of ``layout``'s width and weights."""
    S = 1 + d + {"full": d * (d + 1) // 2, "diag": d, "spherical": 1}[layout]
    X = rng.normal(1.0, 2.0, (n, d)).astype(dtype)
    eta = (0.05 * rng.normal(size=(K, S))).astype(dtype)
    return X, np.full(d, 0.5), eta, rng.uniform(0.0, 2.0, n)


FORMS = [(True, False, False), (False, True, False), (True, True, False)]


@pytest.mark.parametrize(
    ("transposed", "axpy", "dots", "wide", "dtype", "K"),
    [(*form, False, dtype, 6) for form in FORMS for dtype in ("float64", "float32")]
    # the compiled second product: four components at a time and a remainder, or none
    + [
        (False, axpy, True, False, dtype, K)
        for axpy in (False, True)
        for K in (3, 6, 8)
        for dtype in ("float64", "float32")
    ]
    # the wider blocks: eight components (and four, and a remainder), four statistics
    + [(False, True, True, True, dtype, K) for K in (3, 8, 13) for dtype in ("float64", "float32")],
)
@pytest.mark.parametrize("layout", ["full", "diag", "spherical"])
def test_every_form_of_the_products_gives_the_same_statistics(
    transposed: bool, axpy: bool, dots: bool, wide: bool, dtype: str, K: int, layout: str
) -> None:
    """T @ r^T and r @ T^T, the compiled products (in their blocks and wider blocks) and
    BLAS's: the same sums, m and total to round-off, with whole tiles and a remainder;
    the same reach (the statistics are the same code)."""
    rng = np.random.default_rng(7)
    X, shift, eta, w = _random_pass(rng, 1100, 5, K, layout, dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-13
    for rows in (128, 256):
        plain = gaussian_e_step(X, shift, eta, layout, -60.0, w, Tiling(rows, False, False))
        form = Tiling(rows, transposed, axpy, dots, wide)
        other = gaussian_e_step(X, shift, eta, layout, -60.0, w, form)
        scale = np.abs(plain[0]).max()
        np.testing.assert_allclose(other[0], plain[0], rtol=0, atol=rtol * scale)
        for a, b in zip(other[1:3], plain[1:3], strict=True):  # m may cancel to ~0
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
        assert other[3] == plain[3]


@pytest.mark.parametrize(
    ("layout", "wide"), [("full", False), ("full", True), ("diag", False), ("spherical", False)]
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_layouts_own_pass_is_the_general_loop(
    layout: str, wide: bool, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The functions of the fits' plans (both products compiled: one a layout, its
    branches constants of its machine code) give the bits of the loop that takes the
    layout and the products as arguments, with whole tiles and a remainder; and the
    E-step's wrapper calls them for those plans."""
    rng = np.random.default_rng(12)
    X, shift, eta, w = _random_pass(rng, 1100, 5, 6, layout, dtype)
    compiled = kernels()
    plan = Tiling(256, False, True, True, wide)
    own = gaussian_e_step(X, shift, eta, layout, -60.0, w, plan)
    # the general loop, its arguments as the wrapper passes them
    real = eta.dtype.type
    coef, bias, bits = constants(eta.dtype)
    sums, m, total = np.zeros(eta.shape), np.empty(len(X), eta.dtype), np.empty(len(X), eta.dtype)
    reach = np.zeros(256, eta.dtype)
    compiled.gaussian_e_step(
        X, shift.astype(X.dtype), eta, LAYOUTS.index(layout), real(-60.0), w, coef,
        np.empty(256, bias.dtype), bias, bits, sums, m, total, reach, False, True, True, wide, 4,
    )  # fmt: skip
    for a, b in zip(own[:3], (sums, m, total), strict=True):
        np.testing.assert_array_equal(a, b)
    assert own[3] == reach.max()
    calls = []
    key = (LAYOUTS.index(layout), wide)
    step = compiled.COMPILED_STEPS[key]
    monkeypatch.setitem(compiled.COMPILED_STEPS, key, lambda *a: calls.append(a) or step(*a))
    gaussian_e_step(X, shift, eta, layout, -60.0, w, plan)
    assert len(calls) == 1


def test_the_compiled_second_product_matches_float64() -> None:
    """The float32 pass with its default plan (the compiled second product) gives the
    float64 pass's statistics to float32's round-off on well-scaled rows."""
    rng = np.random.default_rng(10)
    X, shift, eta, w = _random_pass(rng, 5000, 2, 8, "full", "float64")
    double = gaussian_e_step(X, shift, eta, "full", -60.0, w)
    single = gaussian_e_step(X.astype(np.float32), shift, eta.astype(np.float32), "full", -60.0, w)
    assert tiling(eta.shape[1], 8, np.float32).dots
    scale = np.abs(double[0]).max(axis=0)  # per statistic
    np.testing.assert_array_less(np.abs(single[0] - double[0]) / scale, 2e-5)
    loglik = double[1] + np.log(double[2])
    np.testing.assert_allclose(single[1] + np.log(single[2]), loglik, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_pass_is_chunk_invariant(dtype: str) -> None:
    """Chunks of a block (not whole tiles) give the block's statistics, and its rows' m
    and total, to round-off (BLAS may round a row's log p(x, k) differently at the edge
    of a tile), in the default products of each dtype."""
    rng = np.random.default_rng(8)
    X, shift, eta, w = _random_pass(rng, 1500, 4, 5, "diag", dtype)
    whole = gaussian_e_step(X, shift, eta, "diag", -60.0, w)
    parts = [
        gaussian_e_step(X[a:b], shift, eta, "diag", -60.0, w[a:b])
        for a, b in ((0, 333), (333, 1001), (1001, 1500))
    ]
    rtol = 1e-5 if dtype == "float32" else 1e-13
    scale = np.abs(whole[0]).max()
    np.testing.assert_allclose(sum(p[0] for p in parts), whole[0], rtol=0, atol=rtol * scale)
    for i in (1, 2):
        atol = rtol * np.abs(whole[i]).max()
        np.testing.assert_allclose(np.concatenate([p[i] for p in parts]), whole[i], rtol, atol)
    assert max(p[3] for p in parts) == whole[3]


def test_kernels_are_built_once() -> None:
    assert kernels() is kernels()


def _block(data: st.DataObject, rows: int, cols: int, dtype: str) -> np.ndarray:
    """A (rows, cols) block of normal values in ``dtype``."""
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    return np.random.default_rng(seed).normal(size=(rows, cols)).astype(dtype)


# K and S around the kernels' blocks of eight, four (and of two), n from empty to a few
# vectors with a remainder
SIZES = (st.integers(1, 13), st.integers(1, 11), st.integers(0, 70))


@settings(max_examples=60, deadline=None)
@given(st.data(), *SIZES, st.sampled_from(["float64", "float32"]), st.booleans())
def test_the_compiled_first_product_is_eta_times_t_in_s_order(
    data: st.DataObject, K: int, S: int, n: int, dtype: str, wide: bool
) -> None:
    """axpy_product's blocks of four components and four statistics, axpy_wide's of
    eight (and their remainders) give each log-density as one component alone does (a
    multiply-add a statistic in s order, the loop's order before the blocks): the same
    values to the bit, and eta @ T to round-off."""
    eta, T = _block(data, K, S, dtype), _block(data, S, n, dtype)
    out = np.full((K, n), np.nan, dtype=dtype)
    (kernels().axpy_wide if wide else kernels().axpy_product)(eta, T, out)
    tol = 1e-5 if dtype == "float32" else 1e-13
    exact = eta.astype(float) @ T.astype(float)
    bound = tol * (1 + np.abs(eta.astype(float)) @ np.abs(T.astype(float)))
    np.testing.assert_array_less(np.abs(out - exact), bound)
    for k in range(K):
        alone = np.full((1, n), np.nan, dtype=dtype)
        kernels().axpy_product(eta[k : k + 1], T, alone)
        np.testing.assert_array_equal(out[k], alone[0])


@settings(max_examples=60, deadline=None)
@given(st.data(), *SIZES, st.booleans())
def test_the_compiled_second_product_adds_r_times_t(
    data: st.DataObject, K: int, S: int, n: int, wide: bool
) -> None:
    """dot_products' blocks of four rows of R against two of T, dots_wide's against four
    (and their remainders) add R @ T^T to the sums, each to float32's round-off over its n terms."""
    R = np.abs(_block(data, K, n, "float32"))
    T = _block(data, S, n, "float32")
    sums = np.ones((K, S))
    (kernels().dots_wide if wide else kernels().dot_products)(R, T, np.float32(0.0), sums)
    R64, T64 = R.astype(float), T.astype(float)
    bound = 1e-6 * (1 + R64 @ np.abs(T64).T)
    np.testing.assert_array_less(np.abs(sums - (1.0 + R64 @ T64.T)), bound)


@settings(max_examples=60, deadline=None)
@given(st.data(), *SIZES)
def test_float64s_compiled_products_are_blas_products_to_round_off(
    data: st.DataObject, K: int, S: int, n: int
) -> None:
    """float64 takes the compiled products instead of BLAS's: each of their values is
    BLAS's (numpy's dot) to the round-off bound of a sum of m products, |error| <=
    gamma_m sum |a_i b_i| (gamma_m = m u / (1 - m u), u = 2^-53) for each of the two, so
    2 gamma_m apart at most, whatever order either adds its terms in."""
    u = np.finfo(np.float64).eps / 2
    eta, T = _block(data, K, S, "float64"), _block(data, S, n, "float64")
    out = np.full((K, n), np.nan)
    kernels().axpy_product(eta, T, out)
    gamma = S * u / (1 - S * u)
    bound = 2 * gamma * (np.abs(eta) @ np.abs(T)) + np.finfo(np.float64).tiny
    np.testing.assert_array_less(np.abs(out - np.dot(eta, T)), bound)
    R = np.abs(_block(data, K, n, "float64"))
    sums = np.zeros((K, S))
    kernels().dot_products(R, T, 0.0, sums)
    gamma = n * u / (1 - n * u)
    bound = 2 * gamma * (R @ np.abs(T).T) + np.finfo(np.float64).tiny
    np.testing.assert_array_less(np.abs(sums - np.dot(R, T.T)), bound)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 19), st.integers(1, 9), st.integers(0, 70))
def test_the_diag_products_square_x_as_the_laid_out_products_read_it(
    data: st.DataObject, K: int, d: int, n: int
) -> None:
    """axpy_squares and dot_squares read T = (1, x) and take x**2 from it: eta @ (1, x,
    x**2) and R @ (1, x, x**2)^T as axpy_product and dot_products give them on the laid-out
    squares, to the round-off bound of a sum of m products (|error| <= gamma_m sum
    |a_i b_i| for each), with K across the blocks of eight, four and one and d odd or
    even; in float32 to its round-off."""
    for dtype, u in (("float64", 2.0**-53), ("float32", 2.0**-24)):
        x = _block(data, d, n, dtype)
        T = np.vstack([np.ones((1, n), dtype=dtype), x])
        full = np.vstack([T, x * x])  # statistics' rounding of the squares
        eta = _block(data, K, 1 + 2 * d, dtype)
        out, laid = np.full((K, n), np.nan, dtype=dtype), np.full((K, n), np.nan, dtype=dtype)
        kernels().axpy_squares(eta, T, out)
        kernels().axpy_product(eta, full, laid)
        m = 2 * d + 2  # Horner's form: one more rounding a feature
        gamma = m * u / (1 - m * u)
        bound = 2 * gamma * (np.abs(eta).astype(float) @ np.abs(full).astype(float))
        np.testing.assert_array_less(np.abs(out - laid.astype(float)), bound + 1e-300)
        R = np.abs(_block(data, K, n, dtype))
        sums, dots = np.zeros((K, 1 + 2 * d)), np.zeros((K, 1 + 2 * d))
        kernels().dot_squares(R, T, R.dtype.type(0.0), sums)
        kernels().dot_products(R, full, R.dtype.type(0.0), dots)
        gamma = (n + 1) * u / (1 - (n + 1) * u)
        bound = 2 * gamma * (R.astype(float) @ np.abs(full).astype(float).T)
        np.testing.assert_array_less(np.abs(sums - dots), bound + 1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_diag_pass_lays_out_the_squares_only_for_blas(dtype: str) -> None:
    """The default plan of the diagonal layout keeps (1, x) a tile (twice the rows of the
    laid-out statistics in the same bytes) and gives BLAS's forms' statistics to
    round-off; a float64 pass is NumPy's arithmetic to 1e-13 of the sums' scale."""
    from emkit.models._fused_kernels import default_plan, stored_rows

    assert stored_rows(65, "diag") == 33 and stored_rows(65, "full") == 65
    assert default_plan(65, 32, np.float64, "diag") == Tiling(496, True, True, True)
    rng = np.random.default_rng(11)
    X, shift, eta, w = _random_pass(rng, 3000, 7, 11, "diag", dtype)
    fused = gaussian_e_step(X, shift, eta, "diag", -60.0, w)
    blas = gaussian_e_step(X, shift, eta, "diag", -60.0, w, Tiling(256, False, False))
    rtol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(fused[0], blas[0], rtol=0, atol=rtol * np.abs(blas[0]).max())
    for a, b in zip(fused[1:3], blas[1:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    assert fused[3] == blas[3]
    if dtype == "float64":  # NumPy's statistics, products and softmax
        x = X - shift
        T = np.hstack([np.ones((len(X), 1)), x, x * x])
        lp = T @ eta.T
        mx = lp.max(axis=1, keepdims=True)
        e = np.exp(np.maximum(lp - mx, -60.0))
        r = w[:, None] * e / e.sum(axis=1, keepdims=True)
        sums = r.T @ T
        np.testing.assert_allclose(fused[0], sums, rtol=0, atol=1e-13 * np.abs(sums).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_diag_tiles_keep_their_rows_off_multiples_of_1_kib(dtype: str) -> None:
    """The diagonal layout's statistics are stored across the rows of T, one per feature:
    the default plan's rows are never a multiple of 1 KiB apart (they would share a few
    L1 sets), at most 8 rows a step below tiling's; other layouts take tiling's."""
    from emkit.models._fused_kernels import default_plan, stored_rows

    size = np.dtype(dtype).itemsize
    for d in range(1, 130):
        n_stats = 1 + 2 * d
        plan = default_plan(n_stats, 8, dtype, "diag")
        base = tiling(stored_rows(n_stats, "diag"), 8, dtype, "diag")
        assert plan.rows * size % 1024 != 0
        assert base.rows - 16 <= plan.rows <= base.rows and plan.rows % 8 == base.rows % 8
        assert plan._replace(rows=base.rows) == base
    full = 1 + 31 + 31 * 32 // 2  # a multiple of 1 KiB is kept where T is written by rows
    assert default_plan(full, 8, dtype, "full") == tiling(full, 8, dtype)


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")  # tol=0
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_diag_fit_without_numba_is_the_compiled_fit(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Numba a diagonal fit takes the NumPy route (x**2 laid out, BLAS's products,
    NumPy's softmax) and ends where the compiled pass (x**2 taken in its products) does:
    to 1e-10 in float64, float32's round-off in float32; 13 components and 7 features run
    the products' blocks of eight, four and one and an odd feature."""
    X = blobs(4000, 7, 13, seed=4, spread=2.0).astype(dtype)
    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    kw = dict(
        covariance_type="diag", random_state=0, tol=0, max_iter=10, dtype=dtype, chunk_size=1500
    )
    compiled = GaussianMixture(13, **kw).fit(X)
    monkeypatch.setitem(sys.modules, "numba", None)  # import fails
    compiled_module.cache_clear()
    mixture._numba_installed.cache_clear()
    try:
        assert kernels() is None and not mixture._numba_installed()
        plain = GaussianMixture(13, **kw).fit(X)
    finally:
        compiled_module.cache_clear()
        mixture._numba_installed.cache_clear()
    rtol = 1e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(compiled.lower_bounds_, plain.lower_bounds_, rtol=rtol)
    np.testing.assert_allclose(compiled.means_, plain.means_, rtol=10 * rtol, atol=10 * rtol)
    np.testing.assert_allclose(compiled.covariances_, plain.covariances_, rtol=100 * rtol)


@pytest.mark.parametrize("order", ["C", "F", "strided"])
@pytest.mark.parametrize(
    ("data", "work"), [("float64", "float64"), ("float64", "float32"), ("float32", "float32")]
)
@pytest.mark.parametrize("d", [1, 2, 3, 7, 8, 13, 16, 21, 40])
@pytest.mark.parametrize("layout", ["full", "diag", "spherical"])
def test_the_statistics_x_in_blocks_is_the_scalar_loops_x(
    layout: str, d: int, data: str, work: str, order: str
) -> None:
    """x of the pass's statistics, whether transposed in blocks of registers (rows of X
    contiguous, d at least a block: 8 float64 or 16 float32 values) or by the scalar
    loops: each centred value in X's dtype rounded to the working one, bit for bit, with
    whole blocks, features and rows past them; and each column's reach the largest |x|
    of its rows (a NaN skipped, an infinity kept), raised from what it was."""
    compiled = kernels()
    rng = np.random.default_rng(d)
    X = rng.normal(3.0, 2.0, (300, d)).astype(data)
    X[17, d // 2] = np.nan
    X[40, d - 1] = np.inf
    if order == "F":
        X = np.asfortranarray(X)
    elif order == "strided":
        X = np.repeat(X, 2, axis=1)[:, ::2]
    shift = np.asarray(rng.normal(3.0, 1.0, d), dtype=data)
    stats = 1 + d + {"full": d * (d + 1) // 2, "diag": d, "spherical": 1}[layout]
    lo, hi = 9, 9 + 16 * 5 + 7  # blocks of rows of either dtype and some past them
    T = np.full((stats, 128), np.nan, dtype=work)
    reach = np.zeros(128, dtype=work)
    reach[3] = 100.0
    index = ["full", "diag", "spherical"].index(layout)
    compiled.statistics(X, shift, lo, hi, index, T, reach)
    x = (X[lo:hi] - shift).astype(work)
    np.testing.assert_array_equal(T[0, : hi - lo], 1)
    np.testing.assert_array_equal(T[1 : 1 + d, : hi - lo], x.T)
    expected = np.zeros(128, dtype=work)
    expected[3] = 100.0
    expected[: hi - lo] = np.fmax(expected[: hi - lo], np.fmax.reduce(np.abs(x), axis=1))
    np.testing.assert_array_equal(reach, expected)
