"""float32 per-row work: fast path, accuracy against float64."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from emkit import GaussianMixture


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_log_likelihood_close_to_float64(covariance_type: str) -> None:
    X = blobs(3000, 4, 4, seed=20, spread=5.0)
    start = GaussianMixture(
        4, covariance_type=covariance_type, random_state=0, max_iter=2, tol=0
    ).fit(X)
    kw = dict(
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=0,
        max_iter=40,
    )
    f64 = GaussianMixture(4, **kw).fit(X)
    f32 = GaussianMixture(4, dtype="float32", monotonicity="raise", **kw).fit(X.astype(np.float32))
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-4)
    np.testing.assert_allclose(f32.means_, f64.means_, atol=1e-3)
    # the fit keeps its parameters in float64; the fitted attributes of float32 data are
    # float32, as scikit-learn's are
    assert f32.means_.dtype == f32.covariances_.dtype == f32.weights_.dtype == np.float32
    assert f64.means_.dtype == np.float64
    assert f32.score(X) == pytest.approx(f64.score(X), rel=1e-4)


def test_float64_data_is_centred_before_rounding_to_float32() -> None:
    """Data far from the origin: float32 rows would lose the spread; centring first keeps it."""
    X = blobs(2000, 3, 3, seed=21, spread=1.0) * 1e-3 + 1e4
    kw = dict(random_state=0, tol=1e-8, max_iter=300)
    f64 = GaussianMixture(3, **kw).fit(X)
    f32 = GaussianMixture(3, dtype="float32", monotonicity="raise", **kw).fit(X)
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-4)


def test_tight_far_apart_clusters_use_the_whitened_form() -> None:
    """Clusters 2000 apart with spread 0.01: the expanded quadratic form would lose every
    digit in float32, so the family evaluates ||(x - mu) U||^2 instead."""
    rng = np.random.default_rng(22)
    X = np.r_[rng.normal(-1e3, 1e-2, (500, 2)), rng.normal(1e3, 1e-2, (500, 2))]
    kw = dict(random_state=0, tol=1e-8, max_iter=100, means_init=[[-1e3, -1e3], [1e3, 1e3]])
    f64 = GaussianMixture(2, **kw).fit(X)
    f32 = GaussianMixture(2, dtype="float32", monotonicity="raise", **kw).fit(X.astype(np.float32))
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-4)
    family = f32._family(scale=1e3)
    assert family.natural(f32._mixture_params(family).components, np.float32).exact_form


@pytest.mark.parametrize("fused", [True, False])
def test_float32_full_fit_close_to_float64_on_either_e_step(
    fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full covariances on blocks that take the compiled one-pass E-step (float32
    statistics, products and exp, tile sums in float64) or the NumPy one: the float32
    log-likelihood within 1e-4 of float64's, every iteration."""
    from emkit.models import mixture

    monkeypatch.setattr(mixture, "_FUSED_MIN_VALUES", 0)
    monkeypatch.setattr(mixture, "_FUSED", fused)
    calls = []
    e_step = mixture.gaussian_e_step
    monkeypatch.setattr(
        mixture, "gaussian_e_step", lambda *a: calls.append(a[0].dtype) or e_step(*a)
    )
    X = blobs(4000, 5, 4, seed=23, spread=3.0)
    kw = dict(random_state=0, tol=0, max_iter=15, chunk_size=1500)
    f64 = GaussianMixture(4, **kw).fit(X)
    f32 = GaussianMixture(4, dtype="float32", monotonicity="raise", **kw).fit(X.astype(np.float32))
    np.testing.assert_allclose(f32.lower_bounds_, f64.lower_bounds_, rtol=1e-4)
    np.testing.assert_allclose(f32.means_, f64.means_, atol=1e-3)
    assert (np.dtype(np.float32) in calls) is fused  # the float32 rows took the pass
