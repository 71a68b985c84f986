"""The compiled passes of a sweep's small fits (emkit.models._small_pass) against the
Python ones, for every covariance structure: a cell's final pass over its rows (each
row's log-density, log of its largest posterior, component) and the start from a
partition (its statistics and M-step); the Python ones where they do not apply."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emkit.estimators.gaussian_mixture as gaussian_mixture
import emkit.models._small_block as small_block
from emkit import GaussianMixture, ModelBasedClustering
from emkit._compiled_modules import compiled_module
from emkit.estimators._mixture_base import fit_engine
from emkit.estimators._rows import hc_start_tree
from emkit.estimators.selection import _cell_values, _final_values
from emkit.families.covariance import _TOLERANCE, covariance_types
from emkit.families.gaussian import covariance_structure
from emkit.inference.init import init_random_source
from emkit.io import load_faithful

needs_numba = pytest.mark.skipif(
    compiled_module("emkit.models._small_pass") is None, reason="needs Numba"
)

TYPES = [t for t in covariance_types() if t not in ("E", "V")]  # the 18 of 2-d data
# the whitened and the expanded form of log p(x, k) agree to the expanded form's
# round-off (it accepts up to ~1e-8 nats a row before the E-step takes the whitened one)
ATOL = 1e-7


def _fitted(X: np.ndarray, covariance_type: str, k: int, seed: int) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit, a collapse: not what is tested
        return GaussianMixture(
            k, covariance_type=covariance_type, random_state=seed, max_iter=20
        ).fit(X)


def _python_values(model: GaussianMixture, X: np.ndarray) -> np.ndarray:
    return np.asarray(model._map_rows(X, _cell_values), dtype=np.float64)


def _assert_same(compiled: np.ndarray | None, python: np.ndarray) -> None:
    assert compiled is not None
    np.testing.assert_allclose(compiled[:, 0], python[:, 0], rtol=1e-12, atol=ATOL)
    np.testing.assert_allclose(compiled[:, 1], python[:, 1], rtol=1e-9, atol=ATOL)
    np.testing.assert_array_equal(compiled[:, 2], python[:, 2])


@needs_numba
@pytest.mark.parametrize("covariance_type", TYPES)
def test_compiled_pass_is_the_model_pass_for_every_structure(covariance_type: str) -> None:
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, s, size=(60, 3)) for c, s in ((0, 1), (4, 0.5), (-3, 2))])
    X = X @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, -0.4], [0.2, 0.0, 1.5]])
    for k in (1, 3, 5):
        model = _fitted(X, covariance_type, k, seed=k)
        _assert_same(model._compiled_values(X), _python_values(model, X))


@needs_numba
@pytest.mark.parametrize("covariance_type", ["E", "V"])
def test_compiled_pass_one_column(covariance_type: str) -> None:
    X = load_faithful()[0][:, :1].copy()
    model = _fitted(X, covariance_type, 3, seed=0)
    _assert_same(model._compiled_values(X), _python_values(model, X))


@needs_numba
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(4, 80),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
    covariance_type=st.sampled_from(TYPES),
    offset=st.floats(-1e3, 1e3),
    spread=st.floats(1e-2, 1e2),
)
def test_compiled_pass_matches_on_random_data(
    seed: int, n: int, d: int, k: int, covariance_type: str, offset: float, spread: float
) -> None:
    rng = np.random.default_rng(seed)
    X = offset + spread * rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    model = _fitted(X, covariance_type, min(k, n), seed)
    _assert_same(model._compiled_values(X), _python_values(model, X))


def test_the_model_pass_where_the_compiled_one_does_not_apply(monkeypatch: Any) -> None:
    X = load_faithful()[0]
    model = _fitted(X, "VEV", 3, seed=0)
    python = _python_values(model, X)
    assert model._compiled_values(X) is not None
    # without Numba (or before it is loaded), float32 rows, missing values, an engine,
    # rows the engine maps on threads
    monkeypatch.setattr(gaussian_mixture, "compiled_module", lambda name: None)
    assert model._compiled_values(X) is None
    np.testing.assert_array_equal(_final_values(model, X), python)
    monkeypatch.undo()
    monkeypatch.setattr(gaussian_mixture, "numba_loaded", lambda: False)
    assert model._compiled_values(X) is None
    monkeypatch.undo()
    assert model._compiled_values(X.astype(np.float32)) is None
    holed = X.copy()
    holed[5, 1] = np.nan
    assert model._compiled_values(holed) is None
    np.testing.assert_array_equal(_final_values(model, holed), _python_values(model, holed))
    by_model = model.score_samples(holed)
    monkeypatch.setattr(gaussian_mixture, "_COMPILED_PASS", False)
    np.testing.assert_array_equal(by_model, model.score_samples(holed))
    monkeypatch.undo()
    many = np.tile(X, (16, 1))  # 4352 rows
    assert model._compiled_values(many) is None
    model.engine = "memory"
    assert model._compiled_values(X) is None


def test_score_samples_is_the_compiled_pass_and_the_model_pass_to_round_off(
    monkeypatch: Any,
) -> None:
    X = load_faithful()[0]
    for covariance_type in ("VEV", "EEI", "tied", "spherical"):
        model = _fitted(X, covariance_type, 3, seed=1)
        compiled = model.score_samples(X)
        values = model._compiled_values(X)
        assert values is not None
        np.testing.assert_array_equal(compiled, values[:, 0])
        assert model.score(X) == float(values[:, 0].mean())
        monkeypatch.setattr(gaussian_mixture, "_COMPILED_PASS", False)
        python = model.score_samples(X)
        monkeypatch.undo()
        np.testing.assert_allclose(compiled, python, rtol=1e-12, atol=ATOL)
        assert model._compiled_values(X[:1]) is not None  # (one row)


def test_sweep_is_the_same_either_way(monkeypatch: Any) -> None:
    """The table with the compiled start and pass is the table without them: the same
    iterations, kept cells and labels, log-likelihoods equal to round-off."""
    X = load_faithful()[0]
    tables = []
    for on in (False, True):
        monkeypatch.setattr(gaussian_mixture, "_COMPILED_PASS", on)
        monkeypatch.setattr(small_block, "_COMPILED_START", on)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mbc = ModelBasedClustering(range(1, 5), covariance_types=["VII", "EEE", "VEV"])
            tables.append(mbc.fit(X))
    python, compiled = tables
    for key in ("n_iter", "converged", "n_components"):
        np.testing.assert_array_equal(python.results_[key], compiled.results_[key])
    assert python.results_["reason"] == compiled.results_["reason"]
    for key in ("log_likelihood", "bic", "icl"):
        np.testing.assert_allclose(python.results_[key], compiled.results_[key], rtol=1e-12)
    np.testing.assert_array_equal(python.labels_, compiled.labels_)
    assert python.best_index_ == compiled.best_index_


def _starts(X: np.ndarray, covariance_type: str, k: int, monkeypatch: Any) -> list[Any]:
    """The start of a sweep cell (the hierarchical tree cut at k), by the compiled M-step
    and by the Python one."""
    tree = hc_start_tree(X, init_random_source(0))
    starts = []
    for on in (True, False):
        monkeypatch.setattr(small_block, "_COMPILED_START", on)
        model = GaussianMixture(k, covariance_type=covariance_type, init_params="hc")
        model._hc_tree = tree
        with fit_engine(model, X) as engine:
            starts.append(model._plan(X, None, None, engine, warm=False).initialize(None))
    return starts


def _assert_same_start(compiled: Any, python: Any, covariance_type: str, X: np.ndarray) -> None:
    np.testing.assert_allclose(compiled.weights, python.weights, rtol=1e-12)
    a, b = compiled.components, python.components
    spread = np.abs(b.means).max() + np.sqrt(np.abs(b.covariances).max())
    np.testing.assert_allclose(a.means, b.means, rtol=1e-10, atol=1e-12 * spread)
    assert a.covariances.shape == b.covariances.shape
    structure = covariance_structure(covariance_type)
    # a scatter is sum x x^T - N mu mu^T: round-off of eps times the rows' squares (the
    # statistics' sums in another order), which a component on few rows (held by
    # reg_covar alone) carries into its covariance whole
    centred = X - X.mean(axis=0)
    atol = 1e-13 * X.shape[0] * float((centred**2).max())
    # an iterative M-step (EVI, VEE, ...) stops where its objective moves by less than
    # _TOLERANCE: its covariances are known to about the square root of that, and inputs
    # that differ by round-off may stop it an iteration apart
    rtol = 1e-9 if getattr(structure, "exact", True) else 10 * np.sqrt(_TOLERANCE)
    # a component on no more rows than columns has a scatter of reg_covar's size alone,
    # known to atol, from which a shape (EVI's, ...) shared with its volume is read
    sizes = np.bincount(hc_start_tree(X, init_random_source(0)).labels(len(python.weights)))
    if sizes.min() <= X.shape[1]:
        rtol = max(rtol, 10 * atol / 1e-6)  # (reg_covar's default)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=rtol, atol=atol)
    # the factors of a component on few rows (held by reg_covar alone) are as far apart
    # as its condition number makes round-off
    dense = structure.dense
    cov = b.covariances
    if dense:
        cond = float(np.linalg.cond(cov.reshape(-1, *cov.shape[-2:])).max())
        smallest = float(np.diagonal(cov, axis1=-2, axis2=-1).min())
    else:
        cond, smallest = float(cov.max() / cov.min()), float(cov.min())
    rtol = max(rtol, atol / smallest, 1e-14 * cond)
    factors = a.precisions_cholesky, b.precisions_cholesky
    np.testing.assert_allclose(*factors, rtol=rtol, atol=rtol * np.abs(factors[1]).max())
    np.testing.assert_array_equal(a.floored, b.floored)
    assert np.isnan(a.gap) == np.isnan(b.gap)
    if not np.isnan(b.gap):
        np.testing.assert_allclose(a.gap, b.gap, rtol=1e-6, atol=1e-9 * np.abs(b.covariances).max())


@needs_numba
@pytest.mark.parametrize("covariance_type", TYPES)
def test_compiled_start_is_the_python_start_for_every_structure(
    covariance_type: str, monkeypatch: Any
) -> None:
    X = load_faithful()[0]
    for k in (1, 2, 4, 7):
        compiled, python = _starts(X, covariance_type, k, monkeypatch)
        _assert_same_start(compiled, python, covariance_type, X)


@needs_numba
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(8, 60),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
    covariance_type=st.sampled_from(TYPES),
    offset=st.floats(-1e3, 1e3),
    spread=st.floats(1e-2, 1e2),
)
def test_compiled_start_matches_on_random_data(
    seed: int, n: int, d: int, k: int, covariance_type: str, offset: float, spread: float
) -> None:
    rng = np.random.default_rng(seed)
    X = offset + spread * rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    with pytest.MonkeyPatch.context() as monkeypatch:
        compiled, python = _starts(X, covariance_type, k, monkeypatch)
    _assert_same_start(compiled, python, covariance_type, X)


def test_the_python_start_where_the_compiled_one_does_not_apply(monkeypatch: Any) -> None:
    X = load_faithful()[0]
    tree = hc_start_tree(X, init_random_source(0))
    model = GaussianMixture(3, covariance_type="VEV", init_params="hc")
    model._hc_tree = tree
    with fit_engine(model, X) as engine:
        mixture = model._plan(X, None, None, engine, warm=False).model
    labels = tree.labels(3)
    assert small_block.compiled_start(mixture, X, labels, 3) is not None
    # without Numba (or before it is loaded), float32 rows, a component without rows
    monkeypatch.setattr(small_block, "compiled_module", lambda name: None)
    assert small_block.compiled_start(mixture, X, labels, 3) is None
    monkeypatch.undo()
    monkeypatch.setattr(small_block, "numba_loaded", lambda: False)
    assert small_block.compiled_start(mixture, X, labels, 3) is None
    monkeypatch.undo()
    assert small_block.compiled_start(mixture, X.astype(np.float32), labels, 3) is None
    assert small_block.compiled_start(mixture, X, np.minimum(labels, 1), 3) is None
    # and the fit is the Python start's
    fits = []
    for compiled in (True, False):
        monkeypatch.setattr(small_block, "_COMPILED_START", compiled)
        model = GaussianMixture(3, covariance_type="VEV", init_params="hc")
        model._hc_tree = tree
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(model.fit(X))
    assert fits[0].n_iter_ == fits[1].n_iter_
    np.testing.assert_allclose(fits[0].lower_bounds_, fits[1].lower_bounds_, rtol=1e-12)


@needs_numba
def test_compiled_pass_takes_a_lower_triangular_factor_set_by_hand() -> None:
    # a model whose precisions_cholesky_ is L with L L^T = P (not scikit-learn's upper
    # factor): the model's own pass accepts it, and so does the compiled one
    X = load_faithful()[0]
    model = _fitted(X, "full", 3, seed=0)
    precisions = model.precisions_
    model.precisions_cholesky_ = np.linalg.cholesky(precisions)
    _assert_same(model._compiled_values(X), _python_values(model, X))


@needs_numba
@pytest.mark.parametrize("covariance_type", ["E", "V"])
def test_compiled_start_one_column(covariance_type: str, monkeypatch: Any) -> None:
    X = load_faithful()[0][:, 1:].copy()
    for k in (1, 3, 6):
        compiled, python = _starts(X, covariance_type, k, monkeypatch)
        _assert_same_start(compiled, python, covariance_type, X)
