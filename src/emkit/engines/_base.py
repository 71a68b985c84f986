"""The one-method interface every engine implements: where rows live, how sums are made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Engine"]


class Engine(Protocol):
    """Runs a function over blocks of rows and combines the results.

    An engine knows nothing about models: ``fn`` receives aligned row blocks of each of
    ``arrays`` (``None`` stays ``None``) and returns a value that supports ``+``.
    """

    def map_reduce(self, fn: Callable[..., Any], *arrays: Any, row_bytes: int = 0) -> Any:
        """Sum of ``fn`` over row blocks, in block order (so results do not depend on threads)."""
        ...

    def map_rows(self, fn: Callable[..., Any], *arrays: Any, row_bytes: int = 0) -> Any:
        """``fn`` applied to row blocks, results concatenated along the first axis."""
        ...
