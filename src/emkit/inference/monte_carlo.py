"""Monte-Carlo EM and stochastic EM: the iteration, its draw schedule and its stopping rule.

Each iteration binds the model's Monte-Carlo draws (a mixture's :class:`Sampled
<emkit.models.mixing.Sampled>` policy, a latent factor model's ``draws``) to the fit's
seed, the iteration and the draw count, maps the E-step over the rows (whose positions
the source carries as its last cached column, a :class:`~emkit.engines.RowIndex`, so
that draws never depend on chunking) and takes
the M-step of the averaged statistics. The objective is the exact log-likelihood of the
parameters the iteration started from, which the E-step computes alongside the draws.

It is not monotone: the M-step maximizes a noisy estimate of Q, so the driver does not
check for decreases (``monotone = False``), and one small change is no convergence (a
run can be lucky once): the step applies its own rule, with the draw schedule, from
:class:`~emkit.models.sampling.MonteCarlo` (``stops_itself = True``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import numpy as np

from emkit.engines._base import Engine
from emkit.engines._source import RowIndex, RowSource, as_source
from emkit.exceptions import InputError
from emkit.inference.steps import EMModel, StepResult
from emkit.models.mixing import Sampled
from emkit.models.sampling import MonteCarlo

__all__ = [
    "MonteCarloState",
    "MonteCarloStep",
    "draw_seed",
    "is_sampled",
    "monte_carlo_plan",
    "row_positions",
]

P = TypeVar("P")


def is_sampled(model: Any) -> bool:
    """Whether the model's E-step draws (Monte-Carlo or stochastic EM)."""
    return isinstance(getattr(model, "assign", None), Sampled) or (
        getattr(model, "draws", None) is not None
    )


def _options(model: Any) -> MonteCarlo:
    assign = getattr(model, "assign", None)
    if isinstance(assign, Sampled):
        return assign.draws.options
    return model.draws.options


def _bind(model: Any, key: tuple[int, ...], n_draws: int) -> Any:
    """The model whose draws are those of one iteration."""
    assign = getattr(model, "assign", None)
    if isinstance(assign, Sampled):
        return replace(model, assign=assign.at(key, n_draws))
    return replace(model, draws=model.draws.at(key, n_draws))


def row_positions(source: RowSource) -> RowSource:
    """``source`` with the column of its rows' positions that a Monte-Carlo fit's E-step
    reads last (made a chunk at a time)."""
    return replace(source, columns=(*source.columns, RowIndex(source.n_rows)))


def draw_seed(random_state: Any) -> int:
    """The seed of a fit's Monte-Carlo draws: an int ``random_state`` itself (so the same
    seed gives the same start as exact EM and the same draws), otherwise a number drawn
    from the Generator or RandomState given, or fresh entropy for None."""
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    return int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]


@dataclass(frozen=True)
class MonteCarloState:
    """What Monte-Carlo EM carries from one iteration to the next."""

    iteration: int  # iterations done
    n_draws: int  # draws per row of the next iteration
    stable: int  # consecutive iterations with |change| < tol
    previous: float  # the last objective (-inf before the first)


class MonteCarloStep(Generic[P]):
    """One iteration of Monte-Carlo EM (or stochastic EM), with its schedule as state.

    ``data``'s last cached column holds the rows' positions (:func:`row_positions`). The
    driver reads ``stops_itself`` (stop when ``done``, not at the first small change)
    and ``monotone`` (no decrease check).
    """

    stops_itself = True
    monotone = False

    def __init__(
        self,
        model: EMModel[P],
        engine: Engine,
        data: RowSource,
        *,
        seed: int,
        tol: float,
    ) -> None:
        self.model = model
        self.engine = engine
        self.data = data
        self.seed = int(seed)
        self.tol = float(tol)
        self.options = _options(model)

    def __call__(self, params: P, state: Any) -> StepResult[P]:
        options = self.options
        if state is None:
            state = MonteCarloState(0, options.n_draws, 0, -np.inf)
        iteration = state.iteration + 1
        model = _bind(self.model, (self.seed, iteration), state.n_draws)
        stats = self.engine.map_reduce(model.expectation(params), self.data)
        objective = model.objective(params, stats)
        if not np.isfinite(objective):  # the driver raises: no M-step from such statistics
            return StepResult(params, objective, 0.0, state)
        new = model.m_step(params, stats)
        change = objective - state.previous
        stable = state.stable + 1 if abs(change) < self.tol else 0
        draws = options.next_draws(state.n_draws, change)
        if draws != state.n_draws:
            logging.getLogger("emkit").debug(
                "Monte-Carlo EM: the log-likelihood fell at iteration %d; %d draws a row next",
                iteration,
                draws,
            )
        following = MonteCarloState(iteration, draws, stable, objective)
        done = stable >= options.n_stable
        return StepResult(new, objective, 0.0, following, done, draws=state.n_draws)


def monte_carlo_plan(
    model: Any,
    data: Any,
    engine: Engine,
    *,
    random_state: Any,
    tol: float,
    accelerate: Any = None,
    monotonicity: str = "warn",
) -> tuple[RowSource, MonteCarloStep[Any] | None]:
    """The data and step of a fit: ``(data, None)`` (the plain EM step) unless the
    model's E-step draws, then ``data`` with the rows' positions added and a
    :class:`MonteCarloStep`. Refuses what cannot hold for a stochastic E-step."""
    data = as_source(data)
    if not is_sampled(model):
        return data, None
    name = _options(model).name
    if accelerate is not None:
        raise InputError(
            f"accelerate={accelerate!r} cannot be combined with e_step={name!r}: SQUAREM "
            "extrapolates a deterministic EM map, and Monte-Carlo noise is not one. Use "
            "accelerate=None, or e_step='exact'."
        )
    if monotonicity == "raise":
        raise InputError(
            f"monotonicity='raise' cannot hold for e_step={name!r}: its M-step maximizes a "
            "Monte-Carlo estimate, so the log-likelihood may fall between iterations (the "
            "check is off for stochastic E-steps). Use monotonicity='warn' or 'off'."
        )
    positions = row_positions(data)
    step: MonteCarloStep[Any] = MonteCarloStep(
        model, engine, positions, seed=draw_seed(random_state), tol=tol
    )
    return positions, step
