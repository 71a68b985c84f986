"""The one EM driver: iterate E- and M-steps, trace and check the objective, restart.

The objective is what EM provably increases (log-likelihood, plus the log prior for
MAP-EM), reported per unit of sample weight so ``tol`` does not depend on the data size.
A decrease beyond round-off is a bug or a numerical failure, never convergence.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from emkit.engines._base import Engine
from emkit.engines._source import RowSource, as_source
from emkit.exceptions import (
    ConvergenceWarning,
    InputError,
    MonotonicityError,
    MonotonicityWarning,
    NonFiniteObjectiveError,
)
from emkit.inference.accelerate import accelerated_step
from emkit.inference.checkpoint import Checkpoint, Saved
from emkit.inference.steps import EMModel, Step, StepBlock, StepResult, em_step

__all__ = [
    "MONOTONICITY_POLICIES",
    "EMModel",
    "EMResult",
    "EMTrace",
    "Step",
    "StepResult",
    "em_step",
    "fit_em",
    "fit_em_restarts",
]

P = TypeVar("P")
MONOTONICITY_POLICIES = ("raise", "warn", "off")


_NO_ITERATIONS = np.zeros(0, dtype=np.intp)
_NO_COMPONENTS = np.zeros(0, dtype=bool)
_NO_BOUND = np.zeros(0, dtype=np.float64)
_NO_DRAWS = np.zeros(0, dtype=np.intp)


class EMTrace(NamedTuple):
    """What happened in one EM run, one entry per iteration.

    ``restarts`` lists the iterations (1-based) whose objective was not compared with the
    one before: the M-step between them had no bound on what it gave up (an infinite
    ``m_step_gap``, e.g. a parameter clipped off an unbounded maximizer), so a new
    monotone run starts there. ``degenerate`` marks the components the model
    reports as collapsed in the final parameters (held at a floor of the constrained
    M-step, see :meth:`Mixture.degenerate <emkit.models.mixture.Mixture.degenerate>`);
    it is empty for models without components or without such a report.

    ``bound`` is the bound made visible: the per-sample lower bound L(q_t, theta_{t+1})
    after the M-step of iteration t, q_t the posterior of its E-step (see
    :class:`~emkit.inference.steps.EMModel`). ``objective[t]`` is L(q_t, theta_t) (the
    E-step closes the gap), the M-step lifts the bound to ``bound[t] >= objective[t]``,
    and ``objective[t + 1] - bound[t]``, :attr:`kl`, is KL(q_t || p(z | x, theta_{t+1})),
    the gap the next E-step closes. NaN where a step has no bound (SQUAREM cycles, models
    without one); empty in traces that record none (online updates, older model files).
    For variational EM the objective is the ELBO and ``bound`` repeats it.

    ``draws`` is, for Monte-Carlo and stochastic EM, the number of draws a row each
    iteration's E-step took (the schedule grows it after a fall of the log-likelihood);
    empty for every other fit.
    """

    objective: NDArray[np.float64]  # per-sample objective at the start of each iteration
    seconds: NDArray[np.float64]  # wall-clock seconds each iteration took
    restarts: NDArray[np.intp] = _NO_ITERATIONS
    degenerate: NDArray[np.bool_] = _NO_COMPONENTS
    bound: NDArray[np.float64] = _NO_BOUND  # per-sample L(q_t, theta_{t+1}) after each M-step
    draws: NDArray[np.intp] = _NO_DRAWS  # Monte-Carlo draws a row, each iteration

    @property
    def kl(self) -> NDArray[np.float64]:
        """KL(q_t || p(z | x, theta_{t+1})) per sample, ``objective[t + 1] - bound[t]``
        for t = 0 .. T - 2 (empty where no bound was recorded)."""
        if self.bound.shape[0] != self.objective.shape[0]:
            return np.zeros(0)
        return np.asarray(self.objective[1:] - self.bound[:-1], dtype=np.float64)


@dataclass(frozen=True)
class EMResult(Generic[P]):
    params: P
    objective: float  # the last objective computed (of the parameters before the last M-step)
    converged: bool
    n_iter: int
    trace: EMTrace


# Round-off allowed in the per-sample objective before a decrease counts, relative to it.
def _decrease_tolerance(objective: float, dtype: Any) -> float:
    eps = float(np.finfo(dtype).eps)
    return (1e3 if np.dtype(dtype) == np.float64 else 1e2) * eps * max(1.0, abs(objective))


def _model_degenerate(model: Any, params: Any) -> NDArray[np.bool_]:
    report = getattr(model, "degenerate", None)
    return _NO_COMPONENTS if report is None else np.asarray(report(params), dtype=bool)


def fit_em(
    model: EMModel[P],
    engine: Engine,
    data: RowSource,
    params: P,
    *,
    tol: float,
    max_iter: int,
    monotonicity: str = "warn",
    dtype: Any = np.float64,
    callback: Callable[[int, float, float], None] | None = None,
    step: Step[P] | None = None,
    state: Any = None,
    start_objective: float = -np.inf,
    checkpoint: Checkpoint | None = None,
    relative_to: float | None = None,
) -> EMResult[P]:
    """Run EM from ``params`` until ``0 <= change < tol``, the model's own stopping rule
    holds, or ``max_iter`` iterations.

    ``relative_to`` (the data's total weight ``w``) makes ``tol`` relative, as mclust's
    is: the change of the total objective ``L = w * objective`` must be below ``tol``
    times ``1 + |L|``, i.e. ``0 <= change < tol * (1 / w + |objective|)`` per sample.

    ``data`` is the :class:`~emkit.engines.RowSource` the engine maps over (rows, sample
    weights, known labels; bare rows are accepted). Its cached columns may hold per-row
    arrays that the E-step reads and updates in place, its memory from one iteration to
    the next (k-means keeps each row's label and distance bounds there); with an engine
    whose chunks are views of the arrays (in memory), each chunk writes only its own
    rows.
    ``callback(iteration, objective, change)`` is called after every iteration.
    ``step`` is the iteration (default: :func:`em_step` of the model), called with the
    parameters and ``state``, the state it carries from one iteration to the next.
    ``start_objective`` is the objective the first iteration's change is measured from: a
    warm start continues a previous run's trace (its last objective), so that convergence
    is detected across calls.

    The objective may fall between two iterations by no more than round-off (the
    driver's relative tolerance plus the step's ``roundoff``, the model's own estimate
    when it has one) and the M-step's slack, a provable bound of what an inexact M-step
    gave up; anything more is reported as the ``monotonicity`` policy says. An infinite
    slack (no bound) is not a licence for any decrease: the next iteration starts a new
    monotone run and is recorded in ``trace.restarts``.

    ``checkpoint`` (:class:`~emkit.inference.checkpoint.Checkpoint`) saves the parameters
    and the trace every few iterations and at the end; a run given a checkpoint that
    holds a state continues from it (the start ``params`` only give the parameters'
    shape), and ends as the uninterrupted run does. Only steps that carry no state
    between iterations (plain EM) can be checkpointed.
    """
    if monotonicity not in MONOTONICITY_POLICIES:
        raise InputError(
            f"monotonicity must be one of {MONOTONICITY_POLICIES}, got {monotonicity!r}."
        )
    if step is None:
        step = em_step(model, engine, as_source(data))
    # a stochastic step (Monte-Carlo EM) is not monotone, and one small change of its
    # objective is no convergence: it stops by its own rule (emkit.inference.monte_carlo)
    monotone = getattr(step, "monotone", True)
    stops_itself = getattr(step, "stops_itself", False)
    objectives: list[float] = []
    bounds: list[float] = []
    seconds: list[float] = []
    draws: list[int] = []
    bound_is_objective = bool(getattr(model, "objective_is_bound", False))
    previous = start_objective
    slack = 0.0  # how much the last M-step may lower the objective (inexact M-steps)
    restarts: list[int] = []
    done = False
    objective = -np.inf
    first = 1
    floor = 0.0 if relative_to is None else 1.0 / relative_to  # tol's scale: floor + |objective|
    saved = None if checkpoint is None else checkpoint.load(params)
    if saved is not None:  # resume: the run as it was at the checkpoint
        params, objectives, seconds = saved.params, saved.objectives, saved.seconds
        restarts, slack, done = saved.restarts, saved.slack, saved.done
        first = len(objectives) + 1
        if objectives:
            previous = objective = objectives[-1]
    # whole blocks of iterations at once where the step offers them (em_step of a small
    # Gaussian mixture): each iteration's result is checked, traced and checkpointed as
    # the step's, its parameters made where they are read (the block's last ones taken,
    # the checkpointed ones). A block computes each iteration from the last one's
    # parameters, objective and slack alone, so where blocks begin and end changes no bit
    block = getattr(step, "block", None) if monotone else None
    ran: StepBlock[P] | None = None  # the block whose iterations are being taken
    taken = 0  # how many of them (params: the block's start until they are made)
    share = 0.0  # the seconds of each of them (the block's time, spread evenly)
    for iteration in range(first, max_iter + 1):
        if done:
            break
        start = time.perf_counter()
        if ran is not None and taken == len(ran):
            params, ran = ran.params(taken - 1), None
        if ran is None and block is not None and state is None and math.isfinite(slack):
            scale = None if relative_to is None else floor
            n_max = max_iter - iteration + 1
            ran, taken = block(params, previous, slack, n_max, tol, scale), 0
            share = (time.perf_counter() - start) / max(len(ran), 1)
            if not len(ran):  # the next iteration is the step's
                ran = None
        if ran is not None:
            objective, bound = ran.objectives[taken], ran.bounds[taken]
            next_slack, roundoff, step_done, n_draws = ran.slacks[taken], None, False, 0
            taken += 1
        else:
            result = step(params, state)
            objective, bound, next_slack = result.objective, result.bound, result.slack
            roundoff, step_done, n_draws = result.roundoff, result.done, result.draws
        if not math.isfinite(objective):  # (math: a float, not an array)
            raise NonFiniteObjectiveError(
                f"The EM objective became {objective} at iteration {iteration}. The data may "
                "be badly scaled or reg_covar too small; scale the input data or increase "
                "reg_covar."
            )
        change = objective - previous
        if not monotone:
            pass  # a stochastic step's objective may fall (its Monte-Carlo noise)
        elif math.isinf(slack):
            # the M-step had no bound: a new monotone run starts here (a fall is not
            # convergence either: the change stays negative)
            restarts.append(iteration)
        elif change < 0:
            allowed = slack + _decrease_tolerance(objective, dtype)
            if -change <= allowed + (0.0 if roundoff is None else roundoff()):
                change = 0.0  # round-off at a fixed point, or the allowed inexactness
            elif iteration > 1 or start_objective == -np.inf:
                # (a warm start may continue on other data: its first change is no check)
                _report_decrease(monotonicity, iteration, previous, objective)
        slack = next_slack
        if ran is None:
            params, state = result.params, result.state
        objectives.append(objective)
        bounds.append(objective if bound_is_objective else bound)
        draws.append(n_draws)
        seconds.append(share if ran is not None else time.perf_counter() - start)
        if callback is not None:
            callback(iteration, objective, change)
        previous = objective
        threshold = tol if relative_to is None else tol * (floor + abs(objective))
        if step_done or (not stops_itself and 0 <= change < threshold):
            done = True
        if checkpoint is not None and (
            done or iteration % checkpoint.every == 0 or iteration == max_iter
        ):
            if state is not None:
                raise InputError(
                    "checkpoint works with plain EM steps, which carry no state between "
                    "iterations; this step does (accelerate=...). Drop one of the two."
                )
            if ran is not None:
                params = ran.params(taken - 1)
            checkpoint.save(Saved(params, objectives, seconds, restarts, slack, done))
        if done:
            break
    if ran is not None:
        params = ran.params(taken - 1)
    trace = EMTrace(
        np.asarray(objectives),
        np.asarray(seconds),
        np.asarray(restarts, dtype=np.intp),
        _model_degenerate(model, params),
        np.asarray(bounds, dtype=np.float64),
        np.asarray(draws, dtype=np.intp) if any(draws) else _NO_DRAWS,
    )
    return EMResult(params, float(objective), done, len(objectives), trace)


def _report_decrease(policy: str, iteration: int, previous: float, objective: float) -> None:
    if policy == "off":
        return
    message = (
        f"The EM objective decreased at iteration {iteration}, from {previous!r} to "
        f"{objective!r}. Exact EM never decreases it: this is a numerical failure (try "
        "dtype='float64', a larger reg_covar, or scaled data) or a bug worth reporting."
    )
    if policy == "raise":
        raise MonotonicityError(message)
    warnings.warn(message, MonotonicityWarning, stacklevel=3)


def fit_em_restarts(
    model: EMModel[P],
    engine: Engine,
    data: RowSource,
    initialize: Callable[[Any], P],
    *,
    n_init: int,
    rng: Any,
    tol: float,
    max_iter: int,
    monotonicity: str = "warn",
    dtype: Any = np.float64,
    callback: Callable[[int, float, float], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    score: Callable[[P], float] | None = None,
    accelerate: str | None = None,
    start_objective: float = -np.inf,
    step: Step[P] | None = None,
    checkpoint: Checkpoint | None = None,
    relative_to: float | None = None,
) -> EMResult[P]:
    """Run EM from ``n_init`` initializations drawn with ``rng`` (a Generator, or what
    ``initialize`` takes) and keep the best run.

    Runs are compared by the last objective each computed (that of its parameters before
    the last M-step) or, when given, by ``score(params)`` of its final parameters (higher
    is better; k-means compares its runs' final inertia, as scikit-learn does). A run
    replaces the best only if it beats it by more than round-off, so that equal runs
    (the same clustering, up to the order of the clusters) keep the earliest.

    Warns with :class:`ConvergenceWarning` when the kept run did not converge (as
    scikit-learn does), unless ``max_iter`` is the point (``tol == 0``). ``accelerate``
    (None or ``"squarem"``, :mod:`emkit.inference.accelerate`) replaces the plain EM
    step of every run; ``start_objective`` and ``checkpoint`` (one run only: ``n_init=1``)
    are :func:`fit_em`'s, and so is ``relative_to`` (a relative ``tol``). ``step``
    replaces the plain EM step instead (Monte-Carlo EM, :mod:`emkit.inference.monte_carlo`).
    """
    if checkpoint is not None and n_init != 1:
        raise InputError(
            f"checkpoint resumes one EM run; n_init={n_init} asks for {n_init}. Use n_init=1 "
            "with a checkpoint (or fit without one)."
        )
    data = as_source(data)
    if step is None:
        step = accelerated_step(accelerate, model, engine, data)
    best: EMResult[P] | None = None
    best_score = -np.inf
    for init in range(n_init):
        if on_start is not None:
            on_start(init)
        result = fit_em(
            model,
            engine,
            data,
            initialize(rng),
            tol=tol,
            max_iter=max_iter,
            monotonicity=monotonicity,
            dtype=dtype,
            callback=callback,
            step=step,
            start_objective=start_objective,
            checkpoint=checkpoint,
            relative_to=relative_to,
        )
        run_score = result.objective if score is None or n_init == 1 else score(result.params)
        if best is None or run_score > best_score + _decrease_tolerance(best_score, dtype):
            best, best_score = result, run_score
    assert best is not None
    if not best.converged and tol > 0 and max_iter > 0:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (last change of the "
            f"per-sample objective >= tol={tol}). Increase max_iter or tol, or check the "
            "initialization.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best
