"""The exception and warning types emkit raises.

Every error emkit raises for bad input is an :class:`EmkitError` and also a
:class:`ValueError`, so code written for scikit-learn keeps working.
"""

from __future__ import annotations

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "EmkitError",
    "InputError",
    "InputTypeError",
    "ModelFileError",
    "MonotonicityError",
    "MonotonicityWarning",
]


class EmkitError(Exception):
    """Base class of every error emkit raises on purpose."""


class InputError(EmkitError, ValueError):
    """The data or an argument is not what the call needs; the message says what to do."""


class InputTypeError(InputError, TypeError):
    """Values of the wrong type (e.g. text in a numeric table)."""


class ModelFileError(EmkitError, ValueError):
    """A model file is missing, damaged, of another format version, or not emkit's."""


class MonotonicityError(EmkitError, RuntimeError):
    """The EM objective decreased: a bug or a numerical failure, never convergence."""


class MonotonicityWarning(RuntimeWarning):
    """The EM objective decreased and the policy is ``"warn"``."""


class ConvergenceWarning(_SklearnConvergenceWarning):
    """EM stopped at ``max_iter`` before the objective changed by less than ``tol``."""


class DegenerateComponentWarning(UserWarning):
    """A component collapsed (no responsibility mass, or a singular covariance) and was mended."""
