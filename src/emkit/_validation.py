"""Input checks shared by every layer, with messages that say what to do."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError, InputTypeError

__all__ = [
    "as_float_matrix",
    "check_choice",
    "check_fit_range",
    "check_flag",
    "check_number",
    "check_positive_int",
    "check_random_state",
    "check_sample_weight",
    "check_warm_start",
    "column_as_float",
    "has_missing_values",
    "is_dask_collection",
    "resolve_dtype",
]

# scikit-learn's (and numpy.random.RandomState's) range of integer seeds
_MAX_SEED = 2**32 - 1

_DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}


def resolve_dtype(dtype: Any) -> type[np.floating[Any]]:
    """Map the ``dtype`` option (``"float64"`` or ``"float32"``) to a NumPy type."""
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in _DTYPES:
        raise InputError(
            f"dtype must be 'float64' or 'float32', got {dtype!r}. "
            "Use float32 for speed on large data, float64 (the default) for accuracy."
        )
    return _DTYPES[key]


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def is_dask_collection(X: Any) -> bool:
    """Whether ``X`` is a Dask array, DataFrame or other collection (Dask imported only if
    it already is: nothing else can have made one)."""
    import sys

    if "dask" not in sys.modules:
        return False
    import dask

    return bool(dask.is_dask_collection(X))


def as_float_matrix(
    X: Any,
    *,
    dtype: type[np.floating[Any]] | None = np.float64,
    name: str = "X",
    allow_nan: bool = False,
) -> NDArray[np.floating[Any]]:
    """Return ``X`` as a C-contiguous 2-D float array, or raise a clear :class:`InputError`.

    ``dtype=None`` keeps float32 and float64 data as they are (no copy) and converts
    anything else to float64.
    """
    if is_dask_collection(X):
        raise InputError(
            f"{name} is a Dask collection ({type(X).__name__}), which is read here in memory "
            f"only (the estimators' fit, predict, score and transform take Dask rows of shape "
            f"(n_samples, n_features)). Call {name}.compute() to pass it in memory."
        )
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise InputError(
            f"A sparse matrix was passed as {name}, but dense data is required. Use "
            f"'{name}.toarray()' to convert to a dense numpy array."
        )
    if hasattr(X, "dtypes") and hasattr(X, "columns") and hasattr(X, "to_numpy"):
        X = _frame_as_float(X, name)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as a numeric table: {exc}") from exc
    if arr.dtype.kind in "OUSV" or arr.dtype == bool:
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(np.float64)
            except TypeError as exc:
                raise InputTypeError(
                    f"{name} has non-numeric values ({exc}). Encode categorical columns as "
                    "numbers or drop them before fitting a Gaussian mixture."
                ) from exc
            except ValueError as exc:
                raise InputError(
                    f"{name} has non-numeric values ({exc}). Encode categorical columns as "
                    "numbers or drop them before fitting a Gaussian mixture."
                ) from exc
        elif arr.dtype != bool:
            raise InputError(
                f"{name} has non-numeric values (dtype {arr.dtype}). Encode categorical columns "
                "as numbers or drop them before fitting a Gaussian mixture."
            )
    if arr.dtype.kind == "c":
        raise InputError(f"Complex data not supported: {name} is complex; pass real values.")
    if arr.ndim == 1:
        raise InputError(
            f"{name} is 1-D (shape {arr.shape}); emkit expects a 2-D array of shape "
            "(n_samples, n_features). Reshape your data with X.reshape(-1, 1) if it has a "
            "single feature or X.reshape(1, -1) if it is a single sample."
        )
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D of shape (n_samples, n_features), got {arr.ndim}-D shape "
            f"{arr.shape}."
        )
    if arr.shape[0] == 0:
        raise InputError(
            f"{name} is empty: 0 sample(s) (shape={arr.shape}) while a minimum of 1 is "
            "required; pass data."
        )
    if arr.shape[1] == 0:
        raise InputError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; "
            "pass at least one column."
        )
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    out = np.ascontiguousarray(arr, dtype=dtype)
    # NaN and infinities show in the extremes, which costs no temporary array
    if not allow_nan and not (np.isfinite(out.min()) and np.isfinite(out.max())):
        bad = np.argwhere(~np.isfinite(out))[0]
        kind = "NaN" if np.isnan(out[bad[0], bad[1]]) else "infinity"
        raise InputError(
            f"{name} contains {kind} (first at row {bad[0]}, column {bad[1]}). This "
            "estimator needs complete, finite rows: drop or impute those rows first, and "
            "replace infinities (emkit's mixtures, PPCA and FactorAnalysis accept NaN as a "
            "missing value)."
        )
    return out


def column_as_float(column: Any, label: str) -> NDArray[np.floating[Any]] | None:
    """A numeric pandas column as floats, its missing values (``NaN``, ``None``, ``pd.NA``
    of the nullable dtypes ``Int64``, ``Float64``, ``boolean``) as NaN; None for a column
    that is not numeric (the caller says what it accepts instead).

    ``label`` names the column in messages.
    """
    if column.dtype.kind not in "biuf":
        return None
    try:
        out = column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:  # pragma: no cover - pandas' numeric kinds convert
        raise InputTypeError(f"{label} could not be read as numbers: {exc}") from exc
    return np.asarray(out)


def _frame_as_float(frame: Any, name: str) -> Any:
    """A DataFrame's values for :func:`as_float_matrix`: as they are when every column has
    a NumPy dtype (float32 stays float32), else column by column through
    :func:`column_as_float`, so nullable columns read ``pd.NA`` as a missing value."""
    dtypes = list(frame.dtypes)
    if all(isinstance(dt, np.dtype) for dt in dtypes):
        return frame.to_numpy()
    columns = []
    for c in frame.columns:
        values = column_as_float(frame[c], f"Column {str(c)!r} of {name}")
        if values is None:
            raise InputTypeError(
                f"Column {str(c)!r} of {name} has dtype {frame[c].dtype}; numbers are "
                "needed. Encode categorical columns as numbers or drop them before fitting."
            )
        columns.append(values)
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def has_missing_values(X: NDArray[np.floating[Any]], name: str = "X") -> bool:
    """Whether ``X`` has a missing value (NaN); raises for infinities and for rows with
    every value missing, which carry no information."""
    # NaN and infinities show in the column sums: one BLAS pass over the data (a sum that
    # overflows only sends us to the exact checks below)
    with np.errstate(over="ignore"):
        if np.isfinite(np.ones(X.shape[0], dtype=X.dtype) @ X).all():
            return False
    # min and max propagate NaN; fmin and fmax skip it
    if np.isinf(np.fmax.reduce(X, axis=None)) or np.isinf(np.fmin.reduce(X, axis=None)):
        row, col = np.argwhere(np.isinf(X))[0]
        raise InputError(
            f"{name} contains infinity (first at row {row}, column {col}). Replace "
            "infinities; mark a missing value with NaN."
        )
    empty = np.isnan(X).all(axis=1)
    if empty.any():
        raise InputError(
            f"{name} has {int(empty.sum())} row(s) with every value missing (first at row "
            f"{int(np.argmax(empty))}). A row with nothing observed carries no information: "
            "drop it."
        )
    return bool(np.isnan(X.min()))


def check_sample_weight(
    sample_weight: Any, n_samples: int, dtype: type[np.floating[Any]] = np.float64
) -> NDArray[np.floating[Any]] | None:
    """Validate ``sample_weight``: finite, non-negative, not all zero, one per sample."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.dtype.kind not in "biuf":
        raise InputError(f"sample_weight must be numeric, got dtype {w.dtype}.")
    w = np.ascontiguousarray(w, dtype=dtype)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise InputError(
            f"sample_weight must have shape ({n_samples},) to match X, got shape {w.shape}."
        )
    if not np.isfinite(w).all():
        raise InputError("sample_weight contains NaN or infinity; pass finite weights.")
    if (w < 0).any():
        raise InputError(
            f"sample_weight has negative values (first at index {int(np.argmax(w < 0))}); "
            "weights must be >= 0."
        )
    if not (w > 0).any():
        raise InputError("sample_weight is zero for every sample; at least one must be > 0.")
    return w


def check_random_state(random_state: Any) -> np.random.Generator:
    """One :class:`numpy.random.Generator` from ``random_state``.

    ``random_state`` may be None, an int, a Generator or a (legacy) RandomState.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        if not 0 <= random_state <= _MAX_SEED:
            raise InputError(
                f"random_state must be an int between 0 and 2**32 - 1 (a seed), got "
                f"{int(random_state)}. Pass a non-negative seed such as 0, or None for a "
                "fresh random start."
            )
        return np.random.default_rng(int(random_state))
    raise InputError(
        "random_state must be None, an int between 0 and 2**32 - 1, a "
        f"numpy.random.Generator or a numpy.random.RandomState, got {random_state!r}."
    )


def check_number(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"{name} must be a number >= {minimum}, got {value!r}.")
    if not np.isfinite(value) or value < minimum:
        raise InputError(f"{name} must be a finite number >= {minimum}, got {value!r}.")
    return float(value)


def check_warm_start(name: str, fitted: Any, current: Any) -> None:
    """Raise a clear error when ``warm_start=True`` would continue a fit whose ``name`` was
    ``fitted`` with ``name`` now set to ``current``: the previous parameters do not fit the
    new setting. (scikit-learn's GaussianMixture keeps the old number of components
    silently, or fails with a broadcast error.)"""
    if fitted != current:
        raise InputError(
            f"warm_start=True continues the previous fit, which has {name}={fitted!r}, but "
            f"{name} is now {current!r}. Set warm_start=False to fit from scratch with the "
            f"new {name}, or set {name} back to {fitted!r}."
        )


def check_fit_range(
    scale: float, shape: tuple[int, ...], what: str, dtype: Any = np.float64
) -> None:
    """Raise a clear error when data spread ``scale`` around their centre is so large that
    the sums of squares a fit adds up over ``shape[0]`` rows of ``shape[1]`` columns (and
    the covariances or inertia made of them) would overflow ``dtype``."""
    n, d = shape
    info = np.finfo(dtype)
    limit = 1e-2 * float(np.sqrt(float(info.max) / (max(n, 1) * d)))
    if scale < limit:
        return
    # the power of two at or above the spread (2^1023 at most: 2^1024 is no float64)
    factor = 2.0 ** min(np.ceil(np.log2(scale)), 1023.0)
    raise InputError(
        f"X's values lie up to {scale:.3g} from their mean: their squares, which the "
        f"statistics of {what} add up, would exceed {info.dtype}'s range (about "
        f"{float(info.max):.3g}); the largest spread {what} on {n} rows of {d} columns "
        f"can hold is about {limit:.3g}. Divide X by a constant, e.g. X / {factor:.6g}, "
        "before fitting (the fitted locations then scale back by that constant, variances "
        "by its square)"
        + (
            "."
            if info.dtype == np.float64
            else f", or pass X as float64 (it is {info.dtype}, worked on as such)."
        )
    )
