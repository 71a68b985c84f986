"""A sweep cell's final pass over its rows (each row's log-density, log of its largest
posterior, component): the compiled loop (emkit.models._small_pass) against the model's
own pass, for every covariance structure; the model's pass where it does not apply."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emkit import GaussianMixture, ModelBasedClustering
from emkit._compiled_modules import compiled_module
from emkit.estimators import selection
from emkit.estimators.selection import _cell_values, _compiled_values, _final_values
from emkit.families.covariance import covariance_types
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
        _assert_same(_compiled_values(model, X), _python_values(model, X))


@needs_numba
@pytest.mark.parametrize("covariance_type", ["E", "V"])
def test_compiled_pass_one_column(covariance_type: str) -> None:
    X = load_faithful()[0][:, :1].copy()
    model = _fitted(X, covariance_type, 3, seed=0)
    _assert_same(_compiled_values(model, X), _python_values(model, X))


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
    _assert_same(_compiled_values(model, X), _python_values(model, X))


def test_the_model_pass_where_the_compiled_one_does_not_apply(monkeypatch: Any) -> None:
    X = load_faithful()[0]
    model = _fitted(X, "VEV", 3, seed=0)
    python = _python_values(model, X)
    # without Numba (or before it is loaded), float32 rows, missing values, an engine
    monkeypatch.setattr(selection, "compiled_module", lambda name: None)
    assert _compiled_values(model, X) is None
    np.testing.assert_array_equal(_final_values(model, X), python)
    monkeypatch.undo()
    monkeypatch.setattr(selection, "numba_loaded", lambda: False)
    assert _compiled_values(model, X) is None
    monkeypatch.undo()
    assert _compiled_values(model, X.astype(np.float32)) is None
    holed = X.copy()
    holed[5, 1] = np.nan
    assert _compiled_values(model, holed) is None
    np.testing.assert_array_equal(_final_values(model, holed), _python_values(model, holed))
    model.engine = "memory"
    assert _compiled_values(model, X) is None


def test_sweep_is_the_same_either_way(monkeypatch: Any) -> None:
    """The table with the compiled pass is the table without it: the same iterations,
    kept cells and labels, log-likelihoods equal to round-off."""
    X = load_faithful()[0]
    tables = []
    for on in (False, True):
        monkeypatch.setattr(selection, "_COMPILED_PASS", on)
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
