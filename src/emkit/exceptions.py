"""The exception and warning types emkit raises.

Every error emkit raises on purpose is an :class:`EmkitError`; every error about bad
input is also a :class:`ValueError` (:class:`InputError`, :class:`ModelFileError`), so
code written for scikit-learn keeps working. The README's "Errors and warnings" section
has the same list as a table.

Hierarchy::

    EmkitError (Exception)
    +-- InputError (ValueError)
    |   +-- InputTypeError (TypeError)
    +-- ModelFileError (ValueError)
    +-- DegenerateComponentError (ValueError)
    +-- MonotonicityError (RuntimeError)
        +-- NonFiniteObjectiveError (ValueError)

    MonotonicityWarning (RuntimeWarning)
    ConvergenceWarning (sklearn.exceptions.ConvergenceWarning)
    DegenerateComponentWarning (UserWarning)
"""

from __future__ import annotations

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentError",
    "DegenerateComponentWarning",
    "EmkitError",
    "InputError",
    "InputTypeError",
    "ModelFileError",
    "MonotonicityError",
    "MonotonicityWarning",
    "NonFiniteObjectiveError",
]


class EmkitError(Exception):
    """Base class of every error emkit raises on purpose.

    Raised alone where a fit cannot proceed for a reason that is not an argument (e.g. a
    covariance that is no longer finite); the message says what to change. Catch it to
    handle any emkit failure.
    """


class InputError(EmkitError, ValueError):
    """The data or an argument is not what the call needs.

    The message names the argument (or the file, row or column), what was expected, what
    was received, and what to do; fix the call or the data accordingly.
    """


class InputTypeError(InputError, TypeError):
    """Values of the wrong type (e.g. text in a numeric table).

    Convert or encode the values (a numeric dtype, ``LabelEncoder`` for classes).
    """


class ModelFileError(EmkitError, ValueError):
    """A model file is missing, damaged, of another format version, or not emkit's.

    Check the path, or save the model again with this version of emkit.
    """


class MonotonicityError(EmkitError, RuntimeError):
    """The EM objective decreased: a bug or a numerical failure, never convergence.

    Raised with ``monotonicity="raise"`` when the objective falls by more than round-off
    (the driver's tolerance plus the model's own estimate) and the M-step's provable gap,
    and under every policy when it becomes NaN or infinite. Scale the data, use
    ``dtype="float64"`` or a larger ``reg_covar``; on sane data, report it as a bug.
    """


class NonFiniteObjectiveError(MonotonicityError, ValueError):
    """The EM objective became NaN or infinite: the fit cannot proceed with this data and
    these settings (values whose products leave float64, a component with nothing to
    estimate it from). Also a :class:`ValueError`, like every error about the input: scale
    the data, use ``dtype="float64"`` or a larger ``reg_covar``.
    """


class MonotonicityWarning(RuntimeWarning):
    """The EM objective decreased and the policy is ``"warn"`` (the default).

    The same finding as :class:`MonotonicityError`, with the fit carried on; the same
    remedies apply.
    """


class ConvergenceWarning(_SklearnConvergenceWarning):
    """EM stopped at ``max_iter`` before the objective changed by less than ``tol``.

    Increase ``max_iter`` (or ``tol``), or try more initializations (``n_init``).
    """


class DegenerateComponentError(EmkitError, ValueError):
    """With ``reg_covar=0`` a component's covariance became singular: the fit failed.

    Without regularization the likelihood is unbounded when a component sits on fewer
    samples than dimensions, on a subspace or on equal values, so there is no maximum to
    report (scikit-learn raises here too; mclust reports the model as missing). Increase
    ``reg_covar`` (the default 1e-6 keeps such a component finite), use a prior, decrease
    ``n_components`` or remove duplicated rows.
    """


class DegenerateComponentWarning(UserWarning):
    """A component collapsed, and the fit says what it did about it.

    Either no sample is assigned to the component (its parameters are kept, its weight is
    ~0), or it sits on fewer samples than dimensions, on a subspace or on equal values,
    where the likelihood is unbounded: its covariance (Gamma shape, factor-model noise)
    is then held at the degeneracy floor, a constrained maximum that keeps EM monotone.
    The fitted ``trace_.degenerate`` marks such components. Decrease ``n_components``,
    increase ``reg_covar`` (or use a prior), or remove duplicated rows.
    """
