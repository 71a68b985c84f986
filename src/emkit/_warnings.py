"""Each distinct warning of a fit shown once, with how many times it was raised.

EM repeats its steps: a warning raised in an M-step (a variance raised to a floor, a
covariance mended) comes back at every iteration and every restart. :func:`warnings_once`
wraps an estimator's ``fit`` so that the user sees each kind of warning once per call, as

    Component 1 has a zero variance ... (30 times in this fit; the first is shown)

Warnings are of the same kind when their category is the same and their messages differ
only in numbers (component indices, values). The warnings are re-raised when ``fit``
returns, through :func:`warnings.warn`, so the caller's filters (``"error"``, ``"ignore"``)
apply to them as before.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["SummarizedWarnings", "warnings_once"]

F = TypeVar("F", bound=Callable[..., Any])

# integers, decimals and exponents: what varies between two warnings of the same kind
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class SummarizedWarnings:
    """Context manager that records the warnings of its body and re-raises each kind once.

    Parameters
    ----------
    stacklevel : int, default=2
        Where the re-raised warnings point, counted as :func:`warnings.warn` counts from
        the code that holds the ``with`` statement: 1 is that code, 2 its caller.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with SummarizedWarnings():
    ...         for k in range(3):
    ...             warnings.warn(f"component {k} is empty", RuntimeWarning)
    >>> [str(w.message) for w in caught]
    ['component 0 is empty (3 times in this fit; the first is shown)']
    """

    def __init__(self, stacklevel: int = 2) -> None:
        self.stacklevel = stacklevel
        self._catcher: warnings.catch_warnings[list[warnings.WarningMessage]] | None = None
        self._caught: list[warnings.WarningMessage] = []

    def __enter__(self) -> SummarizedWarnings:
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._catcher is not None
        self._catcher.__exit__(exc_type, exc, traceback)
        # the body's warnings are re-raised even when it failed: they may explain why
        counts: dict[tuple[type[Warning], str], list[Any]] = {}
        for record in self._caught:
            key = (record.category, _NUMBER.sub("#", str(record.message)))
            if key in counts:
                counts[key][1] += 1
            else:
                counts[key] = [record, 1]
        self._caught = []
        for record, count in counts.values():
            message = str(record.message)
            if count > 1:
                message = f"{message} ({count} times in this fit; the first is shown)"
            try:
                # 1 would be this method, 2 the code holding the `with`
                warnings.warn(message, record.category, stacklevel=self.stacklevel + 1)
            except Warning:
                if exc is None:
                    raise
                # warnings are errors here, and the body already failed: its error is the
                # one to report, not a warning that would replace it


def warnings_once(fit: F) -> F:
    """Decorate an estimator's ``fit`` so that it raises each kind of warning once.

    The re-raised warnings point at the caller of ``fit``.
    """

    @functools.wraps(fit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with SummarizedWarnings(stacklevel=2):
            return fit(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
