"""SQUAREM: squared extrapolation of the EM map (Varadhan & Roland, 2008), on statistics.

EM's statistics form a vector space (:mod:`emkit.models.statistics`), so the fixed-point
iteration s -> E(M(s)) can be extrapolated there. One cycle from statistics s0 (of the
parameters theta0 the cycle starts from) takes two plain EM steps,

    theta1 = M(s0), s1 = E(theta1);  theta2 = M(s1), s2 = E(theta2),

and with r = s1 - s0, v = s2 - 2 s1 + s0 and the step length alpha = -||r|| / ||v|| (their
scheme S3, kept at most -1) it jumps to

    s' = s0 - 2 alpha r + alpha^2 v,   theta' = M(s').

theta' is kept only if its objective is at least theta2's (and finite); otherwise alpha is
halved towards -1 (``(alpha - 1) / 2``) a few times, and in the end the cycle falls back to
theta2, the plain EM result. Every cycle therefore ends at least as high as two EM steps
would: the objective stays monotone (within the M-steps' own slack), and the driver checks
it as for plain EM.

A cycle costs three E-steps (the third evaluates theta', and is the next cycle's s0 when it
is kept); near a slow fixed point it advances like many plain steps.

The statistics must be coordinates that do not move with the parameters: the family
mixtures' sums of T(x) are. A model whose statistics are taken relative to the current
parameters (the factor models' scatter about the current means, their expected factor
scores in the current loadings' frame) says ``extrapolate = "parameters"``, and the same
scheme runs on its parameters (arrays in nested tuples) instead: theta' from theta0,
theta1, theta2, evaluated by its E-step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.exceptions import EmkitError, InputError
from emkit.inference.steps import EMModel, Step, StepResult, model_roundoff

__all__ = ["ACCELERATIONS", "accelerated_step", "squarem_step"]

P = TypeVar("P")

ACCELERATIONS = (None, "squarem")

# How many times a rejected extrapolation is pulled back towards the plain EM result.
_BACKTRACKS = 3


@dataclass(frozen=True)
class _Evaluated(Generic[P]):
    """Parameters with the E-step statistics and the objective that go with them."""

    params: P
    stats: Any
    objective: float


def _vector(stats: Any) -> np.ndarray:
    """The statistics' array fields as one vector (the scalars are the objective's)."""
    values = [np.ravel(v) for v in vars(stats).values() if isinstance(v, np.ndarray)]
    return np.concatenate(values) if values else np.zeros(0)


def _combine(parts: tuple[Any, Any, Any], coefficients: tuple[float, float, float]) -> Any:
    """sum_i c_i parts_i for parameters of one structure (arrays in nested tuples)."""
    first = parts[0]
    if isinstance(first, tuple):
        combined = [_combine((a, b, c), coefficients) for a, b, c in zip(*parts, strict=True)]
        return type(first)(*combined) if hasattr(first, "_fields") else tuple(combined)
    if first is None:
        return None
    return sum(c * np.asarray(p) for c, p in zip(coefficients, parts, strict=True))


def _parameter_vector(params: Any) -> np.ndarray:
    if isinstance(params, tuple):
        values = [_parameter_vector(p) for p in params if p is not None]
        return np.concatenate(values) if values else np.zeros(0)
    return np.ravel(np.asarray(params, dtype=np.float64))


def squarem_step(model: EMModel[P], engine: Engine, data: RowSource) -> Step[P]:
    """A SQUAREM cycle as the driver's step; its state is the E-step of the parameters it
    starts from (None at the first cycle)."""
    if hasattr(model, "supplement"):
        raise InputError(
            "accelerate='squarem' needs an EM map that varies smoothly with the statistics; "
            "k-means' hard assignments make it piecewise constant. Use accelerate=None."
        )

    def evaluate(params: P) -> _Evaluated[P]:
        stats = engine.map_reduce(model.expectation(params), data)
        return _Evaluated(params, stats, model.objective(params, stats))

    in_parameters = getattr(model, "extrapolate", "statistics") == "parameters"

    def trial(make: Any) -> _Evaluated[P] | None:
        """``make()`` evaluated, or None where extrapolated values are not valid ones
        (a negative mass or variance, a scatter that is not positive definite...)."""
        try:
            # a trial: what it would warn of (a component emptied) rejects it instead
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("error")
                found = evaluate(make())
        except (EmkitError, ValueError, ArithmeticError, np.linalg.LinAlgError, Warning):
            return None
        return found if np.isfinite(found.objective) else None

    def jump(cycle: tuple[_Evaluated[P], _Evaluated[P], _Evaluated[P]], alpha: float) -> Any:
        # s0 - 2 alpha r + alpha^2 v = (1 + alpha)^2 s0 - 2 alpha (1 + alpha) s1 + alpha^2 s2
        c = ((1.0 + alpha) ** 2, -2.0 * alpha * (1.0 + alpha), alpha * alpha)
        if in_parameters:
            return lambda: _combine((cycle[0].params, cycle[1].params, cycle[2].params), c)
        s0, s1, s2 = (e.stats for e in cycle)
        return lambda: model.m_step(cycle[2].params, s0 * c[0] + s1 * c[1] + s2 * c[2])

    def vector(e: _Evaluated[P]) -> np.ndarray:
        return _parameter_vector(e.params) if in_parameters else _vector(e.stats)

    def step(params: P, state: Any) -> StepResult[P]:
        start = state if isinstance(state, _Evaluated) else evaluate(params)
        if not np.isfinite(start.objective):
            return StepResult(params, start.objective, 0.0, None)
        one = evaluate(model.m_step(params, start.stats))
        gap = model.m_step_gap(one.params, start.stats)
        two = evaluate(model.m_step(one.params, one.stats))
        gap += model.m_step_gap(two.params, one.stats)
        best = two
        r = vector(one) - vector(start)
        v = vector(two) - 2.0 * vector(one) + vector(start)
        norm_v = float(np.linalg.norm(v))
        if norm_v > 0 and np.isfinite(two.objective):
            alpha = min(-float(np.linalg.norm(r)) / norm_v, -1.0)
            for _ in range(_BACKTRACKS):
                if alpha >= -1.0:
                    break
                found = trial(jump((start, one, two), alpha))
                if found is not None and found.objective >= two.objective:
                    best = found
                    break
                alpha = (alpha - 1.0) / 2.0
        roundoff = model_roundoff(model, start.params, start.stats)
        return StepResult(best.params, start.objective, gap, best, roundoff=roundoff)

    return step


def accelerated_step(
    accelerate: Any, model: EMModel[P], engine: Engine, data: RowSource
) -> Step[P] | None:
    """The driver's step for an estimator's ``accelerate`` argument (None: plain EM)."""
    if check_acceleration(accelerate) is None:
        return None
    return squarem_step(model, engine, data)


def check_acceleration(accelerate: Any) -> str | None:
    """An estimator's ``accelerate`` argument, checked."""
    if accelerate is None or (isinstance(accelerate, str) and accelerate in ACCELERATIONS):
        return accelerate
    raise InputError(
        f"accelerate must be one of {ACCELERATIONS}, got {accelerate!r}: None runs plain EM, "
        "'squarem' extrapolates it (Varadhan & Roland, 2008)."
    )
