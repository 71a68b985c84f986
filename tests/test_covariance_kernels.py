"""The compiled M-step of mclust's composed covariance models
(emkit.families._covariance_compiled) against the NumPy one it replaces: every model,
with and without a prior, weights, one component, one dimension; the iterative models'
monotonicity; the fallbacks; and which structures use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import mclust_data

from emkit import GaussianMixture
from emkit.exceptions import EmkitError
from emkit.families import GaussianPrior
from emkit.families import covariance as cov_module
from emkit.families.covariance import MCLUST_MODELS, Composed, kernels
from emkit.families.gaussian import GaussianFamily, covariance_structure

pytestmark = pytest.mark.skipif(kernels() is None, reason="needs Numba")

COMPOSED = [name for name in MCLUST_MODELS if covariance_structure(name).compiled_m_step]
SKLEARN_FOUR = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}


def _posterior(
    model: str, X: np.ndarray, K: int, seed: int, prior: Any = None, weights: Any = None
) -> tuple[Any, Any, Any]:
    """(structure, posterior, previous covariances of the model) from random
    responsibilities: what an M-step of a fit hands to ``maximize``."""
    structure = covariance_structure(model)
    family = GaussianFamily(structure, reg_covar=1e-6, prior=prior).bind(X, weights)
    Xc = X - family.shift
    rng = np.random.default_rng(seed)
    stats = structure.statistics(Xc.copy())
    w = np.ones(len(X)) if weights is None else weights

    def posterior(z: np.ndarray) -> Any:
        zw = z * w[:, None]
        shared = structure.shared_statistics(Xc, w)
        return family.attached_prior(K).posterior((zw.sum(0), zw.T @ stats, shared))

    first = posterior(rng.dirichlet(np.ones(K), len(X)))
    maximize = getattr(structure, "maximize_numpy", structure.maximize)
    previous = maximize(first.scatter, first.mass, 1e-6, None)[0]
    return structure, posterior(rng.dirichlet(np.ones(K), len(X))), previous


def _assert_same(a: tuple[Any, Any], b: tuple[Any, Any], rtol: float = 1e-10) -> None:
    scale = float(np.max(np.abs(a[0])))
    np.testing.assert_allclose(b[0], a[0], rtol=rtol, atol=rtol * scale)
    if a[1] is None:
        assert b[1] is None
    else:
        assert b[1] >= 0.0
        np.testing.assert_allclose(b[1], a[1], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("prior", [None, "mclust", "auto"])
@pytest.mark.parametrize("data", ["faithful", "iris"])
@pytest.mark.parametrize("model", COMPOSED)
def test_compiled_m_step_is_numpys(model: str, data: str, prior: Any) -> None:
    X = mclust_data(data)
    for K, seed in ((1, 0), (3, 1), (5, 2)):
        structure, post, previous = _posterior(model, X, K, seed, prior=prior)
        for start in (None, previous):
            numpy = structure.maximize_numpy(post.scatter, post.mass, 1e-6, start)
            compiled = structure._maximize_compiled(post.scatter, post.mass, 1e-6, start)
            assert compiled is not None
            _assert_same(numpy, compiled)


@pytest.mark.parametrize("model", COMPOSED)
def test_compiled_m_step_with_weights_and_no_reg_covar(model: str) -> None:
    X = mclust_data("diabetes")
    weights = np.random.default_rng(3).uniform(0.1, 3.0, len(X))
    structure, post, previous = _posterior(model, X, 4, 4, weights=weights)
    for reg_covar in (0.0, 1e-2):
        numpy = structure.maximize_numpy(post.scatter, post.mass, reg_covar, previous)
        compiled = structure._maximize_compiled(post.scatter, post.mass, reg_covar, previous)
        assert compiled is not None
        _assert_same(numpy, compiled)


def test_one_dimensional_e_model() -> None:
    x = mclust_data("faithful")[:, :1]
    structure, post, previous = _posterior("E", x, 3, 5, prior="mclust")
    assert structure.compiled_m_step
    compiled = structure._maximize_compiled(post.scatter, post.mass, 1e-6, previous)
    assert compiled is not None and compiled[0].shape == (3,)
    _assert_same(structure.maximize_numpy(post.scatter, post.mass, 1e-6, previous), compiled)
    assert not covariance_structure("V").compiled_m_step


@pytest.mark.parametrize("model", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_models_never_decrease_the_objective(model: str) -> None:
    """From any start of the model the compiled ascent ends no lower, and says so."""
    X = mclust_data("iris")
    structure, post, previous = _posterior(model, X, 3, 6)
    cov, gap = structure.maximize(post.scatter, post.mass, 0.0, previous)
    before = structure._loss(post.scatter, post.mass, previous)
    after = structure._loss(post.scatter, post.mass, cov)
    assert after <= before + 1e-12 * abs(before)
    assert gap == 0.0
    assert structure.infeasible(cov) is None


@pytest.mark.parametrize("model", list(SKLEARN_FOUR))
def test_codes_cover_scikit_learns_four(model: str) -> None:
    """The kernels' codes also give VII, VVI, EEE and VVV: each the structure's divide."""
    compiled = kernels()
    codes = cov_module._CODES
    volume, shape, orientation = (codes[letter] for letter in model)
    X = mclust_data("iris")
    full = covariance_structure("VVV")
    _, post, _ = _posterior("VVV", X, 3, 7)
    W, m = post.scatter, post.mass
    gap = np.full(1, np.nan)
    if model in ("EEE", "VVV"):
        cov = np.empty_like(W)
        status = compiled.m_step_dense(
            W, m, 1e-3, np.empty((0, 4, 4)), volume, shape, orientation, True, 0.0, 1, cov, gap
        )
        if model == "EEE":
            expected = covariance_structure("tied").divide(W.sum(0), m.sum(), 1e-3)
            expected = np.broadcast_to(expected, cov.shape)
        else:
            expected = full.divide(W, m, 1e-3)
    else:
        # a trace per component (mass d N_k) for VII, the diagonals for VVI
        V = np.diagonal(W, axis1=1, axis2=2)
        Wv, mv = (V.sum(1, keepdims=True), 4 * m) if model == "VII" else (V.copy(), m)
        cov = np.empty_like(Wv)
        status = compiled.m_step_variances(
            Wv, mv, 1e-3, np.empty((0, Wv.shape[1])), volume, shape, True, 0.0, 1, cov, gap
        )
        name = SKLEARN_FOUR[model]
        expected = covariance_structure(name).divide(Wv[:, 0] if model == "VII" else Wv, mv, 1e-3)
        cov = cov[:, 0] if model == "VII" else cov
    assert status == compiled.OK
    np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    X = mclust_data("faithful")
    structure, post, previous = _posterior("VEV", X, 3, 8)
    W, m = post.scatter, post.mass
    expected = structure.maximize_numpy(W, m, 1e-6, previous)
    # non-finite statistics, a component without mass, a start the sweeps cannot
    # decompose: the NumPy loops decide
    bad = W.copy()
    bad[0, 0, 0] = np.inf
    assert structure._maximize_compiled(bad, m, 1e-6, previous) is None
    assert structure._maximize_compiled(W, np.array([m[0], 0.0, m[2]]), 1e-6, None) is None
    broken = previous.copy()
    broken[1] = np.nan
    assert structure._maximize_compiled(W, m, 1e-6, broken) is None
    # a start of another layout (diagonals) is left to the NumPy path
    diagonals = np.diagonal(previous, axis1=1, axis2=2).copy()
    assert structure._maximize_compiled(W, m, 1e-6, diagonals) is None
    _assert_same(expected, structure.maximize(W, m, 1e-6, previous))
    # without Numba
    monkeypatch.setattr(cov_module, "kernels", lambda: None)
    assert structure._maximize_compiled(W, m, 1e-6, previous) is None
    result = structure.maximize(W, m, 1e-6, previous)
    np.testing.assert_array_equal(result[0], expected[0])


def test_only_composed_models_are_compiled() -> None:
    for name in ("full", "tied", "diag", "spherical", "V"):
        assert not covariance_structure(name).compiled_m_step
    for name in [*COMPOSED, "E"]:
        structure = covariance_structure(name)
        assert isinstance(structure, Composed) and structure.compiled_m_step
    assert len(COMPOSED) == 10


def test_fits_agree_with_the_numpy_m_step(monkeypatch: pytest.MonkeyPatch) -> None:
    X = mclust_data("iris")
    kwargs: dict[str, Any] = dict(tol=1e-10, max_iter=200, random_state=0)
    for model in ("VEV", "VVE", "VEI"):
        compiled = GaussianMixture(3, covariance_type=model, **kwargs).fit(X)
        with monkeypatch.context() as patch:
            patch.setattr(Composed, "compiled_m_step", False)
            numpy = GaussianMixture(3, covariance_type=model, **kwargs).fit(X)
        np.testing.assert_allclose(compiled.covariances_, numpy.covariances_, rtol=1e-7)
        assert compiled.lower_bound_ == pytest.approx(numpy.lower_bound_, rel=1e-10)


def test_a_plain_full_fit_does_not_import_numba() -> None:
    code = (
        "import sys, numpy as np; from emkit import GaussianMixture\n"
        "X = np.random.default_rng(0).normal(size=(200, 3))\n"
        "GaussianMixture(2, random_state=0).fit(X)\n"
        "assert 'numba' not in sys.modules, 'full'\n"
        "GaussianMixture(2, covariance_type='VEV', random_state=0).fit(X)\n"
        "assert 'emkit.families._covariance_compiled' in sys.modules, 'VEV'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prior_objects_keep_their_shares() -> None:
    """The mclust prior through the compiled M-step (a MAP fit, monotone)."""
    X = mclust_data("iris")
    fit = GaussianMixture(
        3, covariance_type="VEV", prior=GaussianPrior(convention="mclust"), random_state=0
    )
    fit.set_params(monotonicity="raise", tol=1e-8).fit(X)
    assert np.all(np.diff(fit.lower_bounds_) >= -1e-10)


def test_bound_priors_and_their_pseudo_rows_are_made_once() -> None:
    X = mclust_data("iris")
    family = GaussianFamily(covariance_structure("VEV"), prior="mclust").bind(X, None)
    bound = family.attached_prior(3)
    assert family.attached_prior(3) is bound
    assert family.attached_prior(2) is not bound
    assert bound.shrinkage > 0
    stats, _ = bound._mean_row_statistics
    assert bound._mean_row_statistics[0] is stats
    row = bound.mean[None, :].copy()
    np.testing.assert_array_equal(stats, bound.structure.statistics(row)[0])


def test_full_scatter_is_the_weighted_scatter() -> None:
    X = mclust_data("iris")
    z = np.random.default_rng(9).dirichlet(np.ones(3), len(X))
    full = covariance_structure("full")
    sum_t = z.T @ full.statistics(X.copy())
    nk = z.sum(0)
    means = sum_t[:, :4] / nk[:, None]
    R = X[None, :, :] - means[:, None, :]
    expected = np.einsum("nk,kni,knj->kij", z, R, R)
    np.testing.assert_allclose(full.scatter(nk, means, sum_t, np.zeros(0)), expected, rtol=1e-9)


@pytest.mark.slow
def test_profile_script_runs(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "bench" / "profile_mstep.py"
    if not script.exists():
        pytest.skip("needs the source tree")
    out = tmp_path / "mstep.json"
    args = ["--calls", "1", "--repeats", "1", "--json", str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["results"]["iris"]["VEV"]["compiled_us"] > 0
    assert report["results"]["iris"]["VVV"]["compiled_us"] is None


def test_compiled_precision_factors_are_the_layouts() -> None:
    rng = np.random.default_rng(10)
    A = rng.normal(size=(4, 3, 3))
    cov = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(3)
    scale = rng.uniform(0.5, 2.0, 3)
    full, vev = covariance_structure("full"), covariance_structure("VEV")
    expected = full.factor(cov, scale)
    got = vev.factor(cov, scale)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got[2], expected[2])
    # a covariance under the degeneracy floor: the NumPy path clips it, as for full
    cov[2] = np.diag([1.0, 1.0, 1e-20])
    expected, got = full.factor(cov, scale), vev.factor(cov, scale)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[2], [False, False, True, False])
    cov[1, 0, 0] = np.nan
    with pytest.raises(EmkitError, match="ill-defined empirical covariance"):
        vev.factor(cov, scale)
