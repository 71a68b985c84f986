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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from emkit.engines._base import Engine
from emkit.exceptions import EmkitError, InputError
from emkit.inference.em import EMModel, Step, StepResult

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


def squarem_step(
    model: EMModel[P], engine: Engine, data: tuple[Any, ...], row_bytes: int = 0
) -> Step[P]:
    """A SQUAREM cycle as the driver's step; its state is the E-step of the parameters it
    starts from (None at the first cycle)."""
    if hasattr(model, "supplement"):
        raise InputError(
            "accelerate='squarem' needs an EM map that varies smoothly with the statistics; "
            "k-means' hard assignments make it piecewise constant. Use accelerate=None."
        )

    def evaluate(params: P) -> _Evaluated[P]:
        stats = engine.map_reduce(model.expectation(params), *data, row_bytes=row_bytes)
        return _Evaluated(params, stats, model.objective(params, stats))

    def from_statistics(stats: Any, params: P) -> _Evaluated[P] | None:
        """M(stats) evaluated, or None where extrapolated statistics are not valid ones
        (a negative mass, a scatter that is not positive definite...)."""
        try:
            # a trial: what it would warn of (a component emptied) rejects it instead
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("error")
                found = evaluate(model.m_step(params, stats))
        except (EmkitError, ValueError, ArithmeticError, np.linalg.LinAlgError, Warning):
            return None
        return found if np.isfinite(found.objective) else None

    def step(params: P, state: Any) -> StepResult[P]:
        start = state if isinstance(state, _Evaluated) else evaluate(params)
        if not np.isfinite(start.objective):
            return StepResult(params, start.objective, 0.0, None)
        one = evaluate(model.m_step(params, start.stats))
        gap = model.m_step_gap(one.params, start.stats)
        two = evaluate(model.m_step(one.params, one.stats))
        gap += model.m_step_gap(two.params, one.stats)
        best = two
        r = _vector(one.stats) - _vector(start.stats)
        v = _vector(two.stats) - 2.0 * _vector(one.stats) + _vector(start.stats)
        norm_v = float(np.linalg.norm(v))
        if norm_v > 0 and np.isfinite(two.objective):
            alpha = min(-float(np.linalg.norm(r)) / norm_v, -1.0)
            for _ in range(_BACKTRACKS):
                if alpha >= -1.0:
                    break
                # s0 - 2 alpha r + alpha^2 v = (1 + alpha)^2 s0 - 2 alpha (1 + alpha) s1
                #                                + alpha^2 s2
                jumped = (
                    start.stats * (1.0 + alpha) ** 2
                    + one.stats * (-2.0 * alpha * (1.0 + alpha))
                    + two.stats * (alpha * alpha)
                )
                found = from_statistics(jumped, two.params)
                if found is not None and found.objective >= two.objective:
                    best = found
                    break
                alpha = (alpha - 1.0) / 2.0
        return StepResult(best.params, start.objective, gap, best)

    return step


def accelerated_step(
    accelerate: Any, model: EMModel[P], engine: Engine, data: tuple[Any, ...], row_bytes: int = 0
) -> Step[P] | None:
    """The driver's step for an estimator's ``accelerate`` argument (None: plain EM)."""
    if accelerate is None:
        return None
    if accelerate == "squarem":
        return squarem_step(model, engine, data, row_bytes)
    raise InputError(
        f"accelerate must be one of {ACCELERATIONS}, got {accelerate!r}: None runs plain EM, "
        "'squarem' extrapolates it (Varadhan & Roland, 2008)."
    )
