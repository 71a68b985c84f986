"""Statistics form a vector space: a zero, ``+`` and multiplication by a scalar.

EM's statistics are sums over rows, so the statistics of two blocks of rows add (chunks,
threads, streams, Dask's tree reductions), and scaling them scales every row's weight
(online EM's step sizes, SQUAREM's extrapolation, the mean statistics of a mini-batch).
Every model's statistics type is a frozen dataclass of arrays and floats that derives from
:class:`Statistics`, which supplies the three operations field by field; a type with a
field of another kind (k-means' farthest rows) overrides them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np

__all__ = ["Statistics"]

S = TypeVar("S", bound="Statistics")


class Statistics:
    """Additive statistics of a block of rows, fields added and scaled one by one.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Sums(Statistics):
    ...     total: float
    ...     sum_x: np.ndarray
    >>> a = Sums(2.0, np.array([1.0, 3.0]))
    >>> b = 0.5 * (a + a)
    >>> float(b.total), b.sum_x.tolist(), a.zero().sum_x.tolist()
    (2.0, [1.0, 3.0], [0.0, 0.0])
    """

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __add__(self: S, other: S) -> S:
        return type(self)(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def __mul__(self: S, scale: float) -> S:
        return type(self)(*(a * scale for a in self._values()))

    def __rmul__(self: S, scale: float) -> S:
        return self * scale

    def zero(self: S) -> S:
        """The statistics of no rows, of the same shapes (the sum's neutral element)."""
        return type(self)(
            *(np.zeros_like(a) if isinstance(a, np.ndarray) else 0.0 for a in self._values())
        )
