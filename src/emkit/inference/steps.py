"""One EM iteration as a value: the step the driver loops over, and the plain EM step.

The driver (:func:`emkit.inference.em.fit_em`) only loops, traces and checks; what one
iteration does is a :class:`Step`, ``step(params, state) -> StepResult``. The plain EM
iteration is :func:`em_step`; variants wrap it or replace it (SQUAREM in
:mod:`emkit.inference.accelerate`) and carry their own state from one iteration to the
next (the E-step of the parameters they start from, ECM cycles, online statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from emkit.engines._base import Engine
from emkit.engines._source import RowSource

__all__ = ["EMModel", "Step", "StepResult", "em_step", "model_roundoff"]

P = TypeVar("P")


class EMModel(Protocol[P]):
    """What the driver needs of a model: steps and an objective, all over statistics.

    A model may also define ``converged(previous, params) -> bool``, its own stopping rule
    asked after every M-step (k-means stops when its centers stop moving, as
    scikit-learn's does), and ``supplement(params, stats)``, a second function to map over
    the rows with the same parameters when some iterations need one (k-means: the rows
    farthest from their centers, when a cluster got no rows); its statistics are added to
    the E-step's before the objective and the M-step. :func:`em_step` reads both.

    The bound made visible: a model may define ``lower_bound(params, new, stats)``, the
    per-sample lower bound L(q, new) = E_q[log p(x, z | new)] + H(q) (+ the log prior of
    ``new`` for MAP-EM) after the M-step, for the posterior q of the E-step at ``params``
    that ``stats`` summarize. Since L(q, params) is the objective at ``params`` (the
    E-step closes the gap), it is computed from the statistics alone as

        L(q, new) = objective(params) + (Q(new) - Q(params)) / weight,

    Q the expected complete-data log-likelihood (+ log prior) under q, in which every term
    that does not depend on the parameters (the entropy of q, log h(x)) cancels: no pass
    over the data. :func:`em_step` records it in :attr:`StepResult.bound` (NaN for a model
    without it). A variational model, whose objective is itself the bound (the ELBO),
    says ``objective_is_bound = True`` instead; the driver then records its objective as
    the bound.
    """

    def expectation(self, params: P) -> Callable[..., Any]: ...

    def m_step(self, params: P, stats: Any) -> P: ...

    def objective(self, params: P, stats: Any) -> float: ...

    def m_step_gap(self, params: P, stats: Any) -> float: ...


class StepResult(NamedTuple, Generic[P]):
    """What one iteration gives the driver."""

    params: P  # the parameters after the iteration
    objective: float  # the per-sample objective of the parameters it started from
    slack: float  # how far the next objective may fall below this one (inexact M-step)
    state: Any  # carried to the next iteration (ECM cycles, online statistics, ...)
    done: bool = False  # the model's own stopping rule holds
    # the model's estimate of the round-off in ``objective`` (per sample), asked for only
    # when the objective fell (models/mixture.py: Mixture.objective_roundoff)
    roundoff: Callable[[], float] | None = None
    # the per-sample lower bound L(q, params) after the M-step, q the posterior of the
    # E-step the step started with (NaN where the step has none: see EMModel)
    bound: float = float("nan")
    # the draws a row of a Monte-Carlo E-step (0: none drawn), kept in the trace
    draws: int = 0


class Step(Protocol[P]):
    """One EM iteration: ``step(params, state) -> StepResult``. Variants (acceleration,
    online updates) wrap the plain step or replace it; the driver only loops, traces and
    checks."""

    def __call__(self, params: P, state: Any) -> StepResult[P]: ...


def model_roundoff(model: Any, params: Any, stats: Any) -> Callable[[], float] | None:
    """The model's ``objective_roundoff(params, stats)`` for these statistics, to ask for
    later (None for a model without one)."""
    estimate = getattr(model, "objective_roundoff", None)
    if estimate is None:
        return None
    return lambda: float(estimate(params, stats))


def em_step(model: EMModel[P], engine: Engine, data: RowSource) -> Step[P]:
    """The plain EM iteration: the E-step mapped over the rows (and the model's
    ``supplement`` when it asks for one), the objective, the M-step and its gap.

    A model with ``derive(params)`` (the values its E-step and its bound both compute
    from the parameters: a mixture's natural parameters) has them computed once per
    parameters: the bound's at the new parameters are the next E-step's, carried from
    one iteration to the next (``expectation(params, derived)``,
    ``lower_bound(params, new, stats, (derived, derived_new))``)."""
    supplement = getattr(model, "supplement", None)
    converged = getattr(model, "converged", None)
    lower_bound = getattr(model, "lower_bound", None)
    derive = getattr(model, "derive", None)
    # the parameters the last iteration ended with, and what was derived from them
    carried: list[Any] = [None, None]

    def step(params: P, state: Any) -> StepResult[P]:
        derived = None
        if derive is not None:
            derived = carried[1] if carried[0] is params else derive(params)
            expectation = model.expectation(params, derived)  # type: ignore[call-arg]
        else:
            expectation = model.expectation(params)
        stats = engine.map_reduce(expectation, data)
        more = None if supplement is None else supplement(params, stats)
        if more is not None:
            stats = stats + engine.map_reduce(more, data)
        objective = model.objective(params, stats)
        if not math.isfinite(objective):  # before an M-step from such statistics
            return StepResult(params, objective, 0.0, state)
        new = model.m_step(params, stats)
        done = converged is not None and converged(params, new)
        gap = model.m_step_gap(new, stats)
        if lower_bound is None:
            bound = np.nan
        elif derive is not None:
            carried[:] = [new, derive(new)]
            bound = float(lower_bound(params, new, stats, (derived, carried[1])))
        else:
            bound = float(lower_bound(params, new, stats))
        roundoff = model_roundoff(model, params, stats)
        return StepResult(new, objective, gap, state, done, roundoff, bound)

    # a model that runs whole blocks of iterations compiled (a small Gaussian mixture)
    blocks = getattr(model, "block", None)
    plain = supplement is None and converged is None
    run = blocks(engine, data) if blocks is not None and plain else None
    if run is None:
        return step

    def block(
        params: P, previous: float, slack: float, n_max: int, tol: float, floor: float | None
    ) -> StepBlock[P]:
        return StepBlock(*run(params, previous, slack, n_max, tol, floor))

    return _BlockStep(step, block)


class StepBlock(Generic[P]):
    """Iterations that one call ran at once (:class:`_BlockStep`): iteration ``i``'s
    objective, bound and slack (a :class:`StepResult`'s, of a step that carries no state
    and has no stopping rule or round-off estimate of its own) and ``params(i)``, its
    parameters, made when asked for: the driver reads those of the last iteration it
    takes and of those it checkpoints, so a block of hundreds of iterations makes one
    or a few parameter objects, not one an iteration."""

    __slots__ = ("bounds", "objectives", "params", "slacks")

    def __init__(
        self,
        objectives: list[float],
        bounds: list[float],
        slacks: list[float],
        params: Callable[[int], P],
    ) -> None:
        self.objectives = objectives
        self.bounds = bounds
        self.slacks = slacks
        self.params = params

    def __len__(self) -> int:
        return len(self.objectives)


class _BlockStep:
    """The plain EM step of a model that also runs blocks of iterations at once:
    ``block(params, previous, slack, n_max, tol, floor)`` gives up to ``n_max``
    iterations' results from ``params`` as a :class:`StepBlock` (``previous``: the
    objective before them, ``slack``: the last step's), ending at the driver's
    convergence rule (``0 <= change < tol``, or ``< tol * (floor + |objective|)``; a
    fall within the slack and the driver's round-off tolerance is a change of 0), and
    before an iteration that the step itself must do (one whose objective falls
    further, or whose M-step the model handles otherwise); no state is carried.
    :func:`~emkit.inference.em.fit_em` checks and traces each result as the step's."""

    def __init__(self, step: Step[Any], block: Callable[..., StepBlock[Any]]) -> None:
        self.step = step
        self.block = block

    def __call__(self, params: Any, state: Any) -> StepResult[Any]:
        return self.step(params, state)
