"""The loader of the composed covariance models' compiled M-step (optional: Numba,
``emkit[fast]``): :func:`kernels` imports :mod:`emkit.families._covariance_compiled`
on first use, so that fits which never reach a composed model's M-step (scikit-learn's
four structures included) do not import Numba."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["kernels"]


@functools.cache
def kernels() -> Any:
    """The compiled loops (:mod:`emkit.families._covariance_compiled`, compiled on first
    use and cached on disk), or None when Numba is not installed."""
    try:
        import numba  # noqa: F401 (optional: a missing or broken install means None)
    except ImportError:
        return None
    from emkit.families import _covariance_compiled

    return _covariance_compiled
