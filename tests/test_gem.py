"""Generalized EM: ``max_m_step_iter`` bounds every iterative M-step (the Gamma shape, the
Beta shapes, the Student-t degrees of freedom). The objective still never decreases, and
the fit ends at the optimum of the full M-step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emkit import MixtureModel, StudentTMixture
from emkit.exceptions import InputError
from emkit.families import Beta, Gamma


def _gamma_rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    shapes = np.array([[1.5, 8.0], [12.0, 2.0]])[labels]
    return rng.gamma(shapes, np.array([[1.0, 0.3], [0.2, 2.0]])[labels])


def _beta_rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return rng.beta(np.array([[2.0], [30.0]])[labels], np.array([[9.0], [10.0]])[labels])


def _t_rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return rng.standard_t(3.0, (n, 2)) + np.array([[0.0, 0.0], [5.0, 2.0]])[labels]


MODELS: dict[str, tuple[Callable[..., Any], Callable[[int, int], np.ndarray], str]] = {
    "gamma": (
        lambda m, **kw: MixtureModel(Gamma(max_m_step_iter=m), 2, **kw),
        _gamma_rows,
        "shapes_",
    ),
    "beta": (lambda m, **kw: MixtureModel(Beta(max_m_step_iter=m), 2, **kw), _beta_rows, "a_"),
    "student-t": (
        lambda m, **kw: StudentTMixture(2, max_m_step_iter=m, **kw),
        _t_rows,
        "degrees_of_freedom_",
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), bound=st.sampled_from([1, 2]))
def test_a_bounded_m_step_never_lowers_the_objective(name: str, seed: int, bound: int) -> None:
    build, rows, _ = MODELS[name]
    X = rows(seed, 150)
    # monotonicity="raise": a decrease beyond round-off fails the fit
    model = build(bound, tol=0.0, max_iter=20, random_state=seed, monotonicity="raise").fit(X)
    assert model.n_iter_ == 20
    objective = model.lower_bounds_
    assert np.all(np.diff(objective) >= -1e-12 * np.abs(objective[1:]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_bounded_m_step_reaches_the_full_m_steps_optimum(name: str) -> None:
    build, rows, attribute = MODELS[name]
    X = rows(0, 400)
    kwargs = {"tol": 1e-10, "max_iter": 3000, "random_state": 0, "monotonicity": "raise"}
    full = build(None, **kwargs).fit(X)
    bounded = build(1, **kwargs).fit(X)
    assert full.converged_ and bounded.converged_
    assert bounded.lower_bound_ == pytest.approx(full.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(getattr(bounded, attribute), getattr(full, attribute), rtol=1e-3)
    # the first M-steps differ: one Newton step from the previous value is not the maximum
    early = build(1, tol=0.0, max_iter=2, random_state=0).fit(X)
    exact = build(None, tol=0.0, max_iter=2, random_state=0).fit(X)
    assert not np.allclose(getattr(early, attribute), getattr(exact, attribute), rtol=1e-9)


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_max_m_step_iter_is_checked_with_one_name(bad: Any) -> None:
    for family in (Gamma, Beta):
        with pytest.raises(InputError, match="max_m_step_iter must be a positive integer or None"):
            family(max_m_step_iter=bad)
    with pytest.raises(InputError, match="max_m_step_iter must be an integer >= 1"):
        StudentTMixture(2, max_m_step_iter=bad).fit(_t_rows(0, 40))
