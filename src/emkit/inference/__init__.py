"""The EM driver, its initializations and (later) its variants."""

from emkit.inference.em import (
    MONOTONICITY_POLICIES,
    EMModel,
    EMResult,
    EMTrace,
    Step,
    StepResult,
    em_step,
    fit_em,
    fit_em_restarts,
)
from emkit.inference.init import INIT_METHODS, initial_responsibilities, one_hot, seed_from
from emkit.models.sampling import STOCHASTIC, MonteCarlo

__all__ = [
    "INIT_METHODS",
    "MONOTONICITY_POLICIES",
    "STOCHASTIC",
    "EMModel",
    "EMResult",
    "EMTrace",
    "MonteCarlo",
    "Step",
    "StepResult",
    "em_step",
    "fit_em",
    "fit_em_restarts",
    "initial_responsibilities",
    "one_hot",
    "seed_from",
]
