"""Random draws for Monte-Carlo E-steps, keyed by row position so chunking never changes them.

Monte-Carlo EM replaces the E-step's expectations by averages over draws of the latent
variables (labels of a mixture, factor scores of PPCA / factor analysis). For a fit to be
reproducible whatever the engine does with the rows, a row's draws depend only on the
fit's seed, the iteration and the row's position in the data: rows are cut into fixed
blocks of :data:`BLOCK_ROWS` positions, and block b of iteration t draws from the
generator seeded with ``SeedSequence([seed, t, b])``. A chunk of rows draws the blocks it
touches and keeps its own rows' share, so any chunk size, thread count or split of the
rows (e.g. complete rows apart from rows with missing values) gives the same draws.

:class:`MonteCarlo` holds what a user chooses: the draw schedule and the stopping rule
(they are run by :mod:`emkit.inference.monte_carlo`); :class:`Draws` is a schedule bound
to an iteration (its seed and draw count) and, inside an E-step, to a block of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import EmkitError, InputError

__all__ = ["BLOCK_ROWS", "STOCHASTIC", "Draws", "MonteCarlo", "factor_draws", "row_draws"]

Array = NDArray[np.floating[Any]]

# Rows per seeded block: a generator costs tens of microseconds to seed, a block of draws
# about as much per thousand values, so blocks of this size cost little of either.
BLOCK_ROWS = 1024


def row_draws(
    key: tuple[int, ...],
    index: NDArray[np.intp],
    draw: Callable[[np.random.Generator, int], Array],
) -> Array:
    """``draw(generator, BLOCK_ROWS)`` (one row of values per position of a block) for the
    blocks that ``index`` (positions of rows in the data) touches, seeded from ``key``
    and the block number, at the rows of ``index``.

    Examples
    --------
    >>> index = np.arange(3000)
    >>> whole = row_draws((0, 1), index, lambda g, n: g.random((n, 2)))
    >>> part = row_draws((0, 1), index[1500:1600], lambda g, n: g.random((n, 2)))
    >>> bool(np.array_equal(whole[1500:1600], part))
    True
    """
    index = np.asarray(index, dtype=np.intp)
    blocks = index // BLOCK_ROWS
    out: Array | None = None
    for b in np.unique(blocks):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*key, int(b)])))
        values = draw(rng, BLOCK_ROWS)
        rows = np.flatnonzero(blocks == b)
        if out is None:
            out = np.empty((index.shape[0], *values.shape[1:]), dtype=values.dtype)
        out[rows] = values[index[rows] - int(b) * BLOCK_ROWS]
    if out is None:  # no rows: the shape of one draw from an empty block
        empty = draw(np.random.default_rng(0), 0)
        return np.empty((0, *empty.shape[1:]), dtype=empty.dtype)
    return out


@dataclass(frozen=True)
class MonteCarlo:
    """Options of Monte-Carlo EM (``e_step=MonteCarlo(...)``; ``"monte-carlo"`` is
    ``MonteCarlo()``, ``"stochastic"`` is :data:`STOCHASTIC`).

    Each iteration draws ``m_t`` values of every row's latent variables from their
    posterior under the current parameters and averages the complete-data statistics
    over them (Wei & Tanner, 1990). The draw count follows an ascent-based rule in the
    spirit of Booth & Hobert (1999) and Caffo, Jank & Jones (2005): the exact
    log-likelihood of every iterate is computed alongside the draws (it costs nothing
    more for these models), and an iteration that did not raise it shows that the
    Monte-Carlo error now outweighs the EM step, so the next one draws ``growth`` times
    as many (``m_1 = n_draws``, ``m_{t+1} = min(ceil(growth m_t), max_draws)`` after a
    decrease, ``m_{t+1} = m_t`` otherwise). The run stops when the per-sample
    log-likelihood changed by less than ``tol`` (either way) over ``n_stable``
    consecutive iterations: one small change may be luck of the draw, several in a row
    are not.

    Parameters
    ----------
    n_draws : int, default=10
        Draws per row in the first iteration (>= 1).
    growth : float, default=2.0
        Factor by which the draw count grows after an iteration that lowered the
        log-likelihood (>= 1; 1 keeps it fixed).
    max_draws : int, default=1000
        Upper limit of the draw count (>= n_draws).
    n_stable : int, default=3
        Consecutive iterations whose change of the log-likelihood must be below ``tol``
        for the run to stop (>= 1).

    Examples
    --------
    >>> MonteCarlo(n_draws=20).name
    'monte-carlo'
    >>> STOCHASTIC.name
    'stochastic'
    """

    n_draws: int = 10
    growth: float = 2.0
    max_draws: int = 1000
    n_stable: int = 3

    @property
    def name(self) -> str:
        """``"stochastic"`` for one draw per row throughout (SEM), else ``"monte-carlo"``."""
        return "stochastic" if self.max_draws == 1 else "monte-carlo"

    def check(self) -> MonteCarlo:
        """The options, checked (an :class:`~emkit.exceptions.InputError` names the bad one)."""

        def whole(name: str, value: Any, minimum: int) -> None:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | np.integer)
                or value < minimum
            ):
                raise InputError(
                    f"MonteCarlo({name}=...) must be an integer >= {minimum}, got {value!r}."
                )

        whole("n_draws", self.n_draws, 1)
        whole("max_draws", self.max_draws, 1)
        whole("n_stable", self.n_stable, 1)
        growth = self.growth
        if isinstance(growth, bool) or not isinstance(growth, int | float | np.number):
            raise InputError(f"MonteCarlo(growth=...) must be a number >= 1, got {growth!r}.")
        if not (math.isfinite(float(growth)) and float(growth) >= 1.0):
            raise InputError(
                f"MonteCarlo(growth=...) must be a finite number >= 1 (1 keeps the draw count "
                f"fixed), got {growth!r}."
            )
        if self.max_draws < self.n_draws:
            raise InputError(
                f"MonteCarlo(max_draws=...) must be at least n_draws={self.n_draws}, got "
                f"{self.max_draws}. Raise max_draws or lower n_draws."
            )
        return self

    def next_draws(self, draws: int, change: float) -> int:
        """The draw count after an iteration with ``draws`` draws whose log-likelihood
        changed by ``change``: grown after a decrease, at most ``max_draws``."""
        if change >= 0:
            return draws
        return min(math.ceil(self.growth * draws), self.max_draws)


STOCHASTIC = MonteCarlo(n_draws=1, growth=1.0, max_draws=1)
"""Stochastic EM (SEM; Celeux & Diebolt, 1985): one draw per row at every iteration."""


@dataclass(frozen=True, eq=False)
class Draws:
    """A Monte-Carlo schedule at one iteration (``key``: seed and iteration; ``n_draws``
    per row) and, in an E-step, a block of rows (their positions ``index`` in the data)."""

    options: MonteCarlo
    n_draws: int = 0
    key: tuple[int, ...] = ()
    index: NDArray[np.intp] | None = None

    def at(self, key: tuple[int, ...], n_draws: int) -> Draws:
        """The draws of one iteration."""
        return replace(self, key=key, n_draws=int(n_draws), index=None)

    def for_rows(self, index: NDArray[np.intp]) -> Draws:
        """The same draws for the rows at positions ``index`` of the data."""
        return replace(self, index=index)

    def _rows(self) -> NDArray[np.intp]:
        if self.index is None or not self.key or self.n_draws < 1:
            raise EmkitError(
                "A Monte-Carlo E-step ran without its iteration's key or its rows' positions; "
                "Monte-Carlo EM runs through emkit.inference.monte_carlo.monte_carlo_step."
            )
        return self.index

    def by_block(self) -> Iterator[tuple[NDArray[np.intp], Draws]]:
        """(rows, their draws) for each seeded block the rows touch, ``rows`` indexing
        this block of rows: drawing a block at a time holds at most
        ``BLOCK_ROWS * n_draws`` values of a row's width, however large the chunk."""
        blocks = self._rows() // BLOCK_ROWS
        order = np.argsort(blocks, kind="stable")
        starts = np.flatnonzero(np.diff(blocks[order], prepend=-1))
        for rows in np.split(order, starts[1:]):
            yield rows, replace(self, index=self._rows()[rows])

    def uniform(self) -> Array:
        """(n_rows, n_draws) uniform values in [0, 1)."""
        m = self.n_draws
        return row_draws(self.key, self._rows(), lambda g, n: g.random((n, m)))

    def normal(self, width: int) -> Array:
        """(n_rows, n_draws, width) standard normal values."""
        m = self.n_draws
        return row_draws(self.key, self._rows(), lambda g, n: g.standard_normal((n, m, width)))

    def uniform_normal(self, width: int) -> tuple[Array, Array]:
        """(n_rows, n_draws) uniform values in [0, 1) and (n_rows, n_draws, width)
        standard normal values, from one generator a block (a label and the latent
        vector given it, for each draw)."""
        m = self.n_draws

        def draw(g: np.random.Generator, n: int) -> Array:
            u = g.random((n, m, 1))
            return np.concatenate([u, g.standard_normal((n, m, width))], axis=2)

        values = row_draws(self.key, self._rows(), draw)
        return values[:, :, 0], values[:, :, 1:]


def factor_draws(e_step: Any) -> Draws | None:
    """The draws of a latent factor model's ``e_step`` argument, checked: None for
    ``"exact"``, else a Monte-Carlo schedule.

    Examples
    --------
    >>> factor_draws("stochastic").options.n_draws
    1
    """
    if isinstance(e_step, MonteCarlo):
        return Draws(e_step.check())
    named = {"exact": None, "monte-carlo": Draws(MonteCarlo()), "stochastic": Draws(STOCHASTIC)}
    if not isinstance(e_step, str) or e_step not in named:
        raise InputError(
            "e_step must be one of 'exact', 'monte-carlo', 'stochastic' or "
            f"emkit.inference.MonteCarlo(...) options, got {e_step!r}. 'exact' is EM; "
            "'monte-carlo' averages over factor scores drawn from their posterior, "
            "'stochastic' draws one a row (stochastic EM)."
        )
    return named[e_step]
