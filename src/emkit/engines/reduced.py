"""An engine over data already reduced to its sufficient statistics: one block, no rows.

When a model's E-step is a closed-form function of a few additive sums of the data (for
probabilistic PCA and factor analysis on complete data: the weighted count, sum x and
sum x x^T), one pass of another engine computes the sums, and every EM iteration after it
runs on them alone. The driver still sees an engine: this one hands the statistics whole
to the E-step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emkit.engines._source import as_source
from emkit.engines.memory import rowwise

__all__ = ["ReducedEngine"]


class ReducedEngine:
    """Apply ``fn`` once to the whole of a source (sufficient statistics, not rows)."""

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        # the statistics carry their own weights: ``fn(statistics, *columns)``
        return rowwise(fn)(as_source(source).whole())

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        return rowwise(fn)(as_source(source).whole())
