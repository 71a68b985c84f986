"""The compiled softmax of exact EM (Numba) against the NumPy one it stands in for."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from emkit import BayesianGaussianMixture, GaussianMixture
from emkit.models import mixing
from emkit.models._softmax_kernels import kernels

pytest.importorskip("numba")


def both_paths(
    log_prob_t: np.ndarray, weights: np.ndarray | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]]:
    """(resp, loglik) of Exact on the (K, n) block's transpose, compiled and NumPy."""
    out = []
    monkeypatch.setattr(mixing, "_COMPILED_MIN_VALUES", 0)
    for compiled in (True, False):
        monkeypatch.setattr(mixing, "_COMPILED", compiled)
        block = log_prob_t.copy().T  # (n, K) component-major, as the E-step leaves it
        resp, loglik = mixing.EXACT(block, None, weights, None, None)
        assert resp is block  # in place on both paths
        out.append((resp, loglik))
    return out[0], out[1]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 700),
    K=st.integers(1, 12),
    spread=st.sampled_from([1.0, 30.0, 1e3]),
    weighted=st.booleans(),
    single=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_compiled_softmax_matches_numpy(
    n: int, K: int, spread: float, weighted: bool, single: bool, seed: int
) -> None:
    """Any block (tiles of 256 rows and a remainder; differences beyond the floor of
    -600, or -60 in float32, included): the same responsibilities and log-likelihood to
    1e-13 in float64, to a few float32 units in float32 (both paths round there)."""
    rng = np.random.default_rng(seed)
    dtype = np.float32 if single else np.float64
    log_prob_t = (rng.normal(0.0, spread, (K, n)) - 1e3).astype(dtype)
    weights = rng.uniform(0.0, 3.0, n) if weighted else None
    with pytest.MonkeyPatch.context() as monkeypatch:
        (r1, l1), (r2, l2) = both_paths(log_prob_t, weights, monkeypatch)
    assert r1.dtype == r2.dtype == dtype
    rtol = 2e-6 if single else 1e-13
    np.testing.assert_allclose(r1, r2, rtol=rtol, atol=1e-300)
    assert l1 == pytest.approx(l2, rel=rtol)


def test_compiled_exp_is_accurate_over_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two components, one at 0 and one at x in [-600, 0]: resp = e^x / (1 + e^x),
    to a few units in the last place of NumPy's exp."""
    x = np.r_[np.linspace(-600.0, 0.0, 100_001), -np.logspace(-300, 2.7, 1000), 0.0, -0.0]
    log_prob_t = np.vstack([np.zeros_like(x), x])
    (r1, _), _ = both_paths(log_prob_t, None, monkeypatch)
    e = np.exp(x)
    np.testing.assert_allclose(r1[:, 1], e / (1.0 + e), rtol=1e-15, atol=0)
    np.testing.assert_allclose(r1[:, 0], 1.0 / (1.0 + e), rtol=1e-15, atol=0)


def test_compiled_softmax_keeps_nan_inf_and_floor_as_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A weight-0 component (-inf) lands on the floor, a NaN spreads to its row, a row
    of -inf gives NaN: as the NumPy path does, never a finite value made up."""
    log_prob_t = np.array(
        [
            [0.0, -np.inf, np.nan, 1.0, -1e4],
            [-np.inf, -np.inf, 0.0, 2.0, -1e4 - 700.0],
            [-5.0, -np.inf, 1.0, np.inf, -1e4 - 1.0],
        ]
    )
    with np.errstate(invalid="ignore"):
        (r1, l1), (r2, l2) = both_paths(log_prob_t, None, monkeypatch)
    np.testing.assert_array_equal(np.isnan(r1), np.isnan(r2))
    assert np.isnan(r1[1:4]).all(axis=1).all()  # -inf row, NaN row, +inf row
    np.testing.assert_allclose(r1[[0, 4]], r2[[0, 4]], rtol=1e-15)
    assert r1[0, 1] == r2[0, 1] == pytest.approx(np.exp(-600.0), rel=1e-14)  # the floor
    assert np.isnan(l1) and np.isnan(l2)


def test_only_large_float_component_major_blocks_without_labels_are_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert mixing._compiled_softmax(np.zeros((3, 10)).T, None) is None  # a small block
    monkeypatch.setattr(mixing, "_COMPILED_MIN_VALUES", 30)
    block = np.zeros((3, 10)).T
    assert mixing._compiled_softmax(block, None) is not None
    assert mixing._compiled_softmax(np.ascontiguousarray(block), None) is None  # row-major
    assert mixing._compiled_softmax(block.astype(np.float32, order="F"), None) is not None
    assert mixing._compiled_softmax(block.astype(np.float16, order="F"), None) is None
    known = (np.array([0]), np.array([1]))
    assert mixing._compiled_softmax(block, known) is None


@pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")  # tol=0
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fits_are_the_same_with_either_softmax(
    covariance_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole fits (exact EM with sample weights, variational EM, float32): the compiled
    softmax changes nothing beyond round-off."""
    X = blobs(600, 3, 4, seed=5, spread=2.0)
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(X))
    fits = {}
    monkeypatch.setattr(mixing, "_COMPILED_MIN_VALUES", 0)
    for compiled in (True, False):
        monkeypatch.setattr(mixing, "_COMPILED", compiled)
        kw = dict(covariance_type=covariance_type, random_state=0, tol=0, max_iter=10)
        gm = GaussianMixture(4, **kw).fit(X, sample_weight=w)
        bgm = BayesianGaussianMixture(n_components=4, **kw).fit(X)
        f32 = GaussianMixture(4, dtype="float32", **kw).fit(X.astype(np.float32))
        fits[compiled] = (gm, bgm, f32)
    (g1, b1, s1), (g2, b2, s2) = fits[True], fits[False]
    np.testing.assert_allclose(s1.lower_bounds_, s2.lower_bounds_, rtol=1e-5)
    np.testing.assert_allclose(g1.lower_bounds_, g2.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(g1.means_, g2.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b1.lower_bound_, b2.lower_bound_, rtol=1e-12)
    np.testing.assert_allclose(g1.predict_proba(X), g2.predict_proba(X), atol=1e-12)


def test_kernels_are_built_once() -> None:
    assert kernels() is kernels()
