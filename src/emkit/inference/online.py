"""Online EM: stepwise updates of running statistics (Cappé & Moulines, 2009).

Each mini-batch's E-step gives its statistics under the current parameters; their average
per unit of sample weight is blended into running statistics with a step size rho_t,

    s_t = (1 - rho_t) s_{t-1} + rho_t S(batch_t) / w(batch_t),

and the M-step maps them back to parameters, scaled to the weight seen so far (which sets
how much a prior weighs against the data; without one the M-step does not depend on the
scale). The step size follows the schedule scikit-learn's online LDA names,

    rho_t = (learning_offset + t) ** (-learning_decay),   t = 1, 2, ...

which converges (Robbins-Monro: sum rho = inf, sum rho^2 < inf) for learning_decay in
(0.5, 1]; ``learning_decay=0`` makes every step 1, so that each call is a whole EM step on
its batch (on the whole data, exactly batch EM). The first batch is blended with step 1.

The E-step is the model's own, mapped over the batch's rows by the engine: online EM,
chunked, threaded and streamed fits share one statistics code path.

Statistics of a continuous latent variable are in a frame that moves with the parameters
(PPCA and factor analysis identify their factors only up to rotation, and each E-step
works in the principal frame of the current loadings). Such a model defines
``reframe(stats, params)``, the statistics its M-step just read expressed in the frame of
the E-step of the parameters it gave, so that the running statistics and the next batch's
are of one frame before they are blended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import numpy as np

from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.exceptions import InputError
from emkit.inference.steps import EMModel

__all__ = ["OnlineState", "check_schedule", "online_update", "step_size"]

P = TypeVar("P")


@dataclass(frozen=True)
class OnlineState(Generic[P]):
    """What online EM carries from one mini-batch to the next."""

    model: Any  # the model bound at the first batch (its centring, its family's settings)
    params: P
    running: Any = None  # statistics per unit of sample weight (None before any batch)
    seen: float = 0.0  # total sample weight of the batches so far
    updates: int = 0  # batches blended in
    objective: float = float("nan")  # the last batch's per-sample objective, before its step


def check_schedule(learning_offset: Any, learning_decay: Any) -> None:
    """The step-size schedule's arguments, checked."""
    for name, value, top in (
        ("learning_offset", learning_offset, np.inf),
        ("learning_decay", learning_decay, 1.0),
    ):
        number = isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool) or not number or not 0.0 <= value <= top or np.isnan(value):
            bound = "a finite number >= 0" if top == np.inf else "a number in [0, 1]"
            raise InputError(
                f"{name} must be {bound}, got {value!r}. The step size of the t-th batch is "
                "(learning_offset + t) ** -learning_decay; learning_decay in (0.5, 1] "
                "converges, 0 makes every batch a whole EM step."
            )


def step_size(updates: int, learning_offset: float, learning_decay: float) -> float:
    """rho_t for the t-th blend (t = ``updates`` + 1); the first is 1."""
    if updates == 0:
        return 1.0
    return float((learning_offset + updates + 1) ** (-learning_decay))


def online_update(
    state: OnlineState[P],
    engine: Engine,
    data: RowSource,
    learning_offset: float,
    learning_decay: float,
) -> OnlineState[P]:
    """One mini-batch of stepwise EM: E-step on ``data``, blend, M-step."""
    model: EMModel[P] = state.model
    batch = engine.map_reduce(model.expectation(state.params), data)
    objective = model.objective(state.params, batch)
    rho = step_size(state.updates, learning_offset, learning_decay)
    mean = batch * (1.0 / batch.weight)
    running = mean if state.running is None else state.running * (1.0 - rho) + mean * rho
    seen = state.seen + batch.weight
    params = model.m_step(state.params, running * seen)
    reframe = getattr(model, "reframe", None)
    if reframe is not None:
        running = reframe(running, params)
    return replace(
        state,
        params=params,
        running=running,
        seen=seen,
        updates=state.updates + 1,
        objective=objective,
    )
