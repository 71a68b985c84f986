"""Every model's statistics form a vector space: a zero, + and multiplication by a scalar,
and scaling them is scaling the rows' weights (what online EM, SQUAREM and tree
reductions rely on)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from emkit.families import Gaussian, Poisson, Product
from emkit.models.factor_mixture import FactorMixture, FactorMixtureParams
from emkit.models.kmeans import KMeansModel, KMeansParams, design_matrix
from emkit.models.latent_factor import (
    LatentFactor,
    column_moments,
    noise_structure,
    ppca_maximum_likelihood,
)
from emkit.models.mixture import Mixture, MixtureParams
from emkit.models.statistics import Statistics

X = blobs(300, 3, 3, seed=4)
COUNTS = np.random.default_rng(5).poisson(3.0, (300, 2)).astype(float)
MIXED = np.hstack([X, COUNTS])


def _gaussian_mixture(structure: str) -> Callable[[np.ndarray, np.ndarray | None], Any]:
    family = Gaussian(structure).bind(X, None)
    params = MixtureParams(
        np.full(3, 1 / 3),
        family.m_step(
            family.default_params(3), *_one_hot_sums(family, X), np.zeros(family.n_shared), 300.0
        ),
    )
    return lambda rows, w: Mixture(family).expectation(params)(rows, w)


def _one_hot_sums(family: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(rows.shape[0]) % 3
    s = Mixture(family).statistics_from_resp(rows, None, np.eye(3)[labels])
    return s.nk, s.sum_t


def _product_mixture() -> Callable[[np.ndarray, np.ndarray | None], Any]:
    family = Product({"x": ([0, 1, 2], Gaussian("diag")), "n": ([3, 4], Poisson())}).bind(
        MIXED, None
    )
    nk, sum_t = _one_hot_sums(family, MIXED)
    params = MixtureParams(
        np.full(3, 1 / 3),
        family.m_step(family.default_params(3), nk, sum_t, np.zeros(family.n_shared), 300.0),
    )
    return lambda rows, w: Mixture(family).expectation(params)(
        np.hstack([rows, COUNTS[: len(rows)]]) if rows.shape[1] == 3 else rows, w
    )


def _factor_mixture() -> Callable[[np.ndarray, np.ndarray | None], Any]:
    model = FactorMixture(noise_structure("diagonal"), X.mean(axis=0), 1e-6)
    S = np.stack([np.cov(X, rowvar=False)] * 2)
    W, noise = ppca_maximum_likelihood(S, 1, 1e-6)
    start = FactorMixtureParams(np.array([0.4, 0.6]), W, X[:2] - X.mean(axis=0), noise)
    return model.expectation(start)


def _latent_factor() -> Callable[[np.ndarray, np.ndarray | None], Any]:
    model = LatentFactor(noise_structure("isotropic"), X.mean(axis=0), 1e-8)
    start = model.initial_params(np.random.default_rng(0), np.zeros(3), X.var(axis=0), 1)
    return model.expectation(start)


def _kmeans() -> Callable[[np.ndarray, np.ndarray | None], Any]:
    e_step = KMeansModel().expectation(KMeansParams(X[:3] - X.mean(axis=0)))
    return lambda rows, w: e_step(design_matrix(rows, X.mean(axis=0)), w)


E_STEPS: dict[str, Callable[[], Callable[[np.ndarray, np.ndarray | None], Any]]] = {
    "gaussian-full": lambda: _gaussian_mixture("full"),
    "gaussian-spherical": lambda: _gaussian_mixture("spherical"),
    "product": _product_mixture,
    "factor-mixture": _factor_mixture,
    "latent-factor": _latent_factor,
    "kmeans": _kmeans,
    "column-moments": lambda: column_moments,
    "moments": lambda: LatentFactor(noise_structure("isotropic"), X.mean(axis=0), 0.0).moments,
}


def _fields(stats: Any) -> dict[str, Any]:
    return {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}


# k-means counts rows (how many moved, how many each cluster holds) beside its weighted
# sums: counts add over blocks but do not scale with the weights
COUNTING = ("far", "moved", "count")


def _assert_close(a: Any, b: Any, rtol: float = 1e-12, counts: bool = True) -> None:
    assert type(a) is type(b)
    for name, value in _fields(a).items():
        if name in COUNTING and (name == "far" or not counts):
            continue
        np.testing.assert_allclose(value, getattr(b, name), rtol=rtol, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", sorted(E_STEPS))
@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.01, 100.0), cut=st.integers(1, 299))
def test_statistics_are_a_vector_space_and_scaling_is_weighting(
    name: str, scale: float, cut: int
) -> None:
    e_step = E_STEPS[name]()
    rows = MIXED if name == "product" else X
    w = np.random.default_rng(cut).uniform(0.1, 2.0, X.shape[0])
    whole = e_step(rows, w)
    assert isinstance(whole, Statistics)
    # statistics of blocks add; the zero is neutral; scaling is weighting every row
    _assert_close(e_step(rows[:cut], w[:cut]) + e_step(rows[cut:], w[cut:]), whole, rtol=1e-10)
    _assert_close(whole + whole.zero(), whole)
    _assert_close(whole.zero() * scale, whole.zero())
    _assert_close(scale * whole, e_step(rows, scale * w), rtol=1e-10)
    _assert_close(whole * scale + whole, (1.0 + scale) * whole, counts=False)
