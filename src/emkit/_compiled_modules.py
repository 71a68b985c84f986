"""The loader of emkit's modules of compiled loops (optional: Numba, ``emkit[fast]``).

Each such module imports Numba and defines its jitted functions at module level (no
closures, so Numba's disk cache finds them in a new process); it is imported on first
use, so that fits which never reach its loops do not import Numba."""

from __future__ import annotations

import functools
import importlib
from typing import Any

__all__ = ["compiled_module"]


@functools.cache
def compiled_module(name: str) -> Any:
    """The module ``name`` of compiled loops (compiled on first use and cached on disk),
    or None when Numba is not installed."""
    try:
        import numba  # noqa: F401 (optional: a missing or broken install means None)
    except ImportError:
        return None
    return importlib.import_module(name)
