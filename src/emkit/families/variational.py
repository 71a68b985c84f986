"""Variational EM for the families with a conjugate prior (mean-field q(z) q(theta)).

:func:`variational` wraps a bound family so that the mixture's E-step and M-step become
variational Bayes without a line of new E-step code: the component parameters are the
posterior objects of :mod:`emkit.families.priors` (one distribution per component), and

    natural(q)  = (E_q[eta], E_q[A(eta)])             (``prior.expected_natural()``)
    m_step(S)   = prior.posterior(S)                  (the conjugate update)
    log_prior(q) = -sum_k KL(q_k || prior)            (the ELBO's parameter terms)

so ``log_prob = T @ E[eta].T - E[A]`` and its softmax is the optimal q(z), and the
mixture's objective (data term + log prior) is the ELBO (seed 002, last section).

Missing values are left out exactly: q(theta) is updated from the observed entries alone.
For that the statistics gain one indicator per column (1 where the entry is observed),
whose natural parameter is ``-E[A_j]``: a missing entry then drops its statistics and its
share of the log-normalizer, and the summed indicators are each component's observed
count per column, which the Poisson, Exponential and Bernoulli updates need.

Which families have one: Poisson and Exponential (Gamma on the rates), Bernoulli (Beta),
Categorical and Multinomial (Dirichlet), and Products of these. The Gamma and Beta
families' conjugate prior over their shape has no closed-form normalizer (so no E[A] and
no KL), LogNormal and Gaussian components take the Normal-inverse-Wishart prior, whose
variational mixture is :class:`emkit.BayesianGaussianMixture`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.families._base import Natural, expanded_log_prob, statistic_rows
from emkit.families.product import Product

__all__ = ["VARIATIONAL_FAMILIES", "VariationalFamily", "point_params", "variational"]

Array = NDArray[np.floating[Any]]

VARIATIONAL_FAMILIES = ("Poisson", "Exponential", "Bernoulli", "Categorical", "Multinomial")

_ALLOWED = (
    "the families with a conjugate prior: Poisson and Exponential (GammaPrior), Bernoulli "
    "(BetaPrior), Categorical and Multinomial (DirichletPrior), and Products of them"
)


def variational(family: Any) -> Any:
    """The bound ``family`` as the variational mixture's family, or a clear error.

    Examples
    --------
    >>> from emkit.families import Bernoulli
    >>> fam = variational(Bernoulli().bind(np.array([[0.0], [1.0]]), None))
    >>> fam.n_stats  # one statistic and one observed-indicator per column
    2
    """
    if isinstance(family, Product):
        return Product(
            {name: (cols, variational(fam)) for name, (cols, fam) in family.blocks.items()}
        )
    name = getattr(family, "name", type(family).__name__)
    if name not in VARIATIONAL_FAMILIES or not hasattr(family, "_expected_natural"):
        raise InputError(
            f"e_step='variational' needs components with a conjugate prior, but the {name} "
            f"family has none with a closed-form variational update; it works with {_ALLOWED}. "
            "Use e_step='exact' (MAP-EM with a prior) for this family"
            + (", or emkit.BayesianGaussianMixture." if "Gaussian" in name else ".")
        )
    if family.fixed:
        raise InputError(
            "e_step='variational' fits a posterior over every parameter; it cannot hold "
            "parameters fixed. Remove them from fixed=, or use e_step='exact'."
        )
    if family._proper_prior() is None:
        prior = "GammaPrior(shape, rate)"
        raise InputError(
            f"e_step='variational' needs a proper prior on the {name} family's parameters "
            f"(without one the posterior is not a distribution): pass prior={prior} or "
            f"prior='auto' to {name}()."
        )
    return VariationalFamily(family)


def point_params(family: Any, params: Any) -> Any:
    """The posterior means of a variational family's posteriors, as the base family's
    parameters (a tuple per block for a Product)."""
    if isinstance(family, Product):
        return tuple(
            point_params(fam, p) for fam, p in zip(family._families(), params, strict=True)
        )
    return family.base._point(params)


@dataclass(frozen=True, eq=False)
class VariationalFamily:
    """A bound family whose parameters are their posterior distributions (see the
    module's docstring); built by :func:`variational`."""

    base: Any

    @property
    def name(self) -> str:
        return str(self.base.name)

    @property
    def n_features(self) -> int:
        return int(self.base.n_features)

    @property
    def n_stats(self) -> int:
        return int(self.base.n_stats) + self.n_features

    @property
    def n_shared(self) -> int:
        return 0

    @property
    def fixed(self) -> None:
        return None

    def bind(self, X: Array, weights: Array | None) -> VariationalFamily:
        return self

    def summarize(self, X: Array, weights: Array | None, index: Any, n_rows: int) -> Any:
        from emkit.families._summary import Summary

        return Summary()

    def bind_summary(self, summary: Any, n_rows: int) -> VariationalFamily:
        return self

    def check(self, X: Array, labels: Sequence[str]) -> None:
        self.base.check(X, labels)

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> VariationalFamily:
        if fixed:
            raise InputError(
                "e_step='variational' fits a posterior over every parameter; it cannot hold "
                "parameters fixed. Remove them from fixed=, or use e_step='exact'."
            )
        return self

    # -- E-step: the expected natural parameters ---------------------------------------

    def prepare(self, X: Array, dtype: Any) -> Any:
        return self.base.prepare(X, dtype)

    def statistics(self, Xp: Any, out: Array | None = None) -> Array:
        n_base = int(self.base.n_stats)
        buf = statistic_rows(out, self.n_stats, Xp.shape[0], Xp.dtype)
        self.base.statistics(Xp, out=buf[:n_base])
        buf[n_base:] = 1.0  # every entry observed
        return buf.T

    @property
    def stat_columns(self) -> NDArray[np.intp]:
        return np.concatenate([self.base.stat_columns, np.arange(self.n_features)])

    def natural(self, params: Any, dtype: Any) -> Natural:
        e_eta, e_norm = self.base._expected_natural(params)
        eta = np.concatenate([e_eta, -e_norm], axis=1)
        dt = np.dtype(dtype)
        # in float32 the mixture is asked to work in float64 (exact_form)
        return Natural(eta.astype(dt), np.zeros(eta.shape[0], dtype=dt), dt != np.float64)

    def log_prob(
        self, Xp: Any, T: Array, params: Any, natural: Natural, offset: Array | None = None
    ) -> Array:
        return expanded_log_prob(T, natural, offset)

    def row_term(self, Xp: Any, params: Any, natural: Natural) -> Array | None:
        return None

    def log_base_measure(self, Xp: Any) -> Array | None:
        return self.base.log_base_measure(Xp)

    def shared_statistics(self, Xp: Any, weights: Array | None) -> Array:
        return np.zeros(0)

    # -- missing entries: left out of the likelihood, and of the update --------------

    def missing_fill(self) -> Array:
        return self.base.missing_fill()

    def missing_log_prob(
        self, Xp: Any, observed: NDArray[np.bool_], params: Any, natural: Natural, offset: Array
    ) -> tuple[Array, Any]:
        T = self.statistics(Xp) * observed[:, self.stat_columns]
        log_prob = T @ natural.eta.T
        log_prob += offset
        return log_prob, T

    def missing_statistics(self, params: Any, state: Any, resp: Array) -> tuple[Array, Array]:
        return (state.T @ resp).T, np.zeros(0)

    def impute(self, params: Any, state: Any, resp: Array) -> Array:
        return self.base.impute(self.base._point(params), None, resp)

    # -- M-step: the conjugate update ------------------------------------------------

    def m_step(
        self, params: Any, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> Any:
        n_base = int(self.base.n_stats)
        return self.base._posterior(sum_t[:, n_base:], sum_t[:, :n_base])

    def m_step_gap(self, params: Any, nk: Array, sum_t: Array) -> float:
        return 0.0

    def log_prior(self, params: Any) -> float:
        """-sum_k KL(q_k || prior): the ELBO's terms of the component parameters."""
        return -float(np.sum(params.kl(self.base._proper_prior())))

    def default_params(self, n_components: int) -> Any:
        n_base = int(self.base.n_stats)
        zeros = np.zeros((n_components, self.n_features))
        return self.base._posterior(zeros, np.zeros((n_components, n_base)))

    def n_parameters(self, n_components: int) -> int:
        return int(self.base.n_parameters(n_components))

    def sample(self, params: Any, component: int, n: int, rng: np.random.Generator) -> Array:
        return self.base.sample(self.base._point(params), component, n, rng)

    def fitted_attributes(self, params: Any) -> dict[str, Any]:
        return self.base.fitted_attributes(self.base._point(params))
