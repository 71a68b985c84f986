"""The interface a component family implements for the mixture model.

A family is an exponential family written so that, for a block of rows ``X``,

    log p(x_n | k) = T[n] @ eta[k] - log_norm[k]   (+ terms equal for every k)

with ``T = family.statistics(family.prepare(X, dtype))`` (one row of sufficient
statistics per sample) and ``eta, log_norm = family.natural(params, dtype)``. The E-step
of a mixture is then one matrix product ``T @ eta.T``; the M-step receives the
responsibility-weighted sums of ``T`` and never the data.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["ComponentFamily", "Natural"]

Array = NDArray[np.floating[Any]]


class Natural(NamedTuple):
    """Natural parameters of all components, ready for the E-step's matrix product."""

    eta: Array  # (n_components, n_stats)
    log_norm: Array  # (n_components,)  log-normalizer A(eta_k) plus constants
    # True where the expanded form T @ eta.T would lose precision for these parameters
    # and the family evaluates its densities another way (e.g. whitened Gaussians).
    exact_form: bool = False


class ComponentFamily(Protocol):
    """What the mixture model needs from a family of component distributions."""

    def prepare(self, X: Array, dtype: Any) -> Array:
        """Rows in the family's working coordinates (e.g. centred), in ``dtype``."""
        ...

    def statistics(self, X: Array) -> Array:
        """Sufficient statistics, shape ``(n_rows, n_stats)``, in ``X``'s dtype."""
        ...

    def natural(self, params: Any, dtype: Any) -> Natural:
        """Natural parameters of every component in ``dtype``."""
        ...

    def log_prob(
        self, X: Array, T: Array, params: Any, natural: Natural, offset: Array | None = None
    ) -> Array:
        """Per-component log-densities of prepared rows, shape ``(n_rows, n_components)``,
        plus ``offset[k]`` in column k when given (e.g. the log mixing weights)."""
        ...

    def shared_statistics(self, X: Array, weights: Array | None) -> Array:
        """Statistics that do not depend on responsibilities (zero-size if the family has none)."""
        ...

    def m_step(
        self, params: Any, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> Any:
        """New component parameters from expected statistics alone."""
        ...

    def m_step_gap(self, params: Any, nk: Array) -> float:
        """How far (total nats) the M-step that gave ``params`` fell short of maximizing Q."""
        ...

    def n_parameters(self, n_components: int) -> int:
        """Number of free parameters of all components (for BIC/AIC)."""
        ...

    def sample(self, params: Any, component: int, n: int, rng: np.random.Generator) -> Array:
        """``n`` draws from one component."""
        ...
