"""The interface a component family implements for the mixture model.

A family is an exponential family written so that, for a block of rows ``X``,

    log p(x_n | k) = T[n] @ eta[k] - log_norm[k] + row_term[n] + log h(x_n)

with ``T = family.statistics(family.prepare(X, dtype))`` (one row of sufficient
statistics per sample), ``eta, log_norm = family.natural(params, dtype)``, ``row_term``
a part that depends on the parameters but is the same for every component (``tied``
Gaussians' ``-x^T P x / 2``) and ``log h(x)`` the log base measure, which depends on no
parameter (e.g. ``-log x!`` for Poisson counts): the mixture computes it once per fit.
The E-step of a mixture is then one matrix product ``T @ eta.T``; the M-step receives
the responsibility-weighted sums of ``T`` and never the data.

With a conjugate prior ``p(eta) ~ exp(<phi, eta> - nu A(eta))`` (pseudo-observations
``phi``, pseudo-count ``nu``) the M-step sets the mean parameters to

    E_k[t(x)] = (phi + S_k) / (nu + N_k)

and maps them back through the inverse of grad A (``families.priors``).

A family is a frozen value. The user builds it unbound (``Poisson()``); the estimator
calls :meth:`ComponentFamily.bind` once on the training rows to fix what depends on the
data (a centring shift, the number of categories, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import DegenerateComponentWarning, InputError, InputTypeError

__all__ = [
    "ComponentFamily",
    "Fixed",
    "Group",
    "Natural",
    "check_distributions",
    "check_family",
    "check_finite",
    "check_positive",
    "column_label",
    "count_free",
    "expanded_log_prob",
    "expanded_roundoff",
    "frozen_components",
    "known",
    "parse_fixed",
    "pattern_ids",
    "show",
    "statistic_rows",
]

Array = NDArray[np.floating[Any]]


class Natural(NamedTuple):
    """Natural parameters of all components, ready for the E-step's matrix product."""

    eta: Array  # (n_components, n_stats)
    log_norm: Array  # (n_components,)  log-normalizer A(eta_k) plus constants
    # True where the expanded form T @ eta.T would lose precision for these parameters
    # and the family evaluates its densities another way (e.g. whitened Gaussians).
    exact_form: bool = False
    # a product's blocks' own natural parameters, in block order (empty otherwise)
    parts: tuple[Natural, ...] = ()


class ComponentFamily(Protocol):
    """What the mixture model needs from a family of component distributions."""

    @property
    def n_features(self) -> int:
        """Number of input columns the family reads."""
        ...

    @property
    def n_stats(self) -> int:
        """Number of sufficient statistics per row."""
        ...

    @property
    def n_shared(self) -> int:
        """Length of the responsibility-independent statistics (0 for most families)."""
        ...

    def bind(self, X: Array, weights: Array | None) -> ComponentFamily:
        """The family with its data-dependent settings fixed from the training rows."""
        ...

    def check(self, X: Array, labels: Sequence[str]) -> None:
        """Raise :class:`InputError` if a value is outside the family's support.

        ``labels`` names the columns of ``X`` for the message.
        """
        ...

    def prepare(self, X: Array, dtype: Any) -> Any:
        """Rows in the family's working coordinates (e.g. centred), in ``dtype``."""
        ...

    def statistics(self, Xp: Any, out: Array | None = None) -> Array:
        """Sufficient statistics, shape ``(n_rows, n_stats)``, in the working dtype.

        ``out``, when given, is a C-ordered ``(n_stats, n_rows)`` buffer (statistic-major)
        to fill; the result is then ``out.T``.
        """
        ...

    def natural(self, params: Any, dtype: Any) -> Natural:
        """Natural parameters of every component in ``dtype``."""
        ...

    def log_prob(
        self, Xp: Any, T: Array, params: Any, natural: Natural, offset: Array | None = None
    ) -> Array:
        """The component-dependent part of the log-densities, shape ``(n_rows, K)``,
        plus ``offset[k]`` in column k when given (e.g. the log mixing weights)."""
        ...

    def row_term(self, Xp: Any, params: Any, natural: Natural) -> Array | None:
        """The parameter-dependent part of every log-density that is the same for all
        components, (n_rows,), or None."""
        ...

    def log_base_measure(self, Xp: Any) -> Array | None:
        """log h(x) of every row, (n_rows,) float64, or None if the family has none."""
        ...

    def shared_statistics(self, Xp: Any, weights: Array | None) -> Array:
        """Statistics that do not depend on responsibilities (length :attr:`n_shared`)."""
        ...

    def m_step(
        self, params: Any, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> Any:
        """New component parameters (MAP under the family's prior) from statistics alone."""
        ...

    def m_step_gap(self, params: Any, nk: Array, sum_t: Array) -> float:
        """How far (total nats) the M-step that gave ``params`` from these statistics fell
        short of maximizing Q (plus the log prior): 0 for an exact M-step."""
        ...

    def log_prior(self, params: Any) -> float:
        """Log prior density of all components' parameters (0 without a prior)."""
        ...

    def default_params(self, n_components: int) -> Any:
        """Parameters to start from before the first M-step (e.g. for components that get
        no responsibility at initialization)."""
        ...

    def n_parameters(self, n_components: int) -> int:
        """Number of free parameters of all components (for BIC/AIC)."""
        ...

    def sample(self, params: Any, component: int, n: int, rng: np.random.Generator) -> Array:
        """``n`` draws from one component, shape ``(n, n_features)``, in user coordinates."""
        ...

    def fitted_attributes(self, params: Any) -> dict[str, Array]:
        """The parameters under their user-facing names (``rates``, ``probabilities``...)."""
        ...

    # -- missing values (NaN): the exact E-step of the observed coordinates -------------

    def missing_fill(self) -> Array:
        """Values (n_features,), in the user's coordinates, that stand in for missing
        entries before :meth:`prepare`: in the support, with log h = 0, and never counted
        (the methods below mask them out)."""
        ...

    def missing_log_prob(
        self, Xp: Any, observed: NDArray[np.bool_], params: Any, natural: Natural, offset: Array
    ) -> tuple[Array, Any]:
        """log p(x_obs | k) + offset[k] without log h, (n, K) float64, for float64 rows
        prepared with the fill values, and a state for :meth:`missing_statistics`."""
        ...

    def missing_statistics(self, params: Any, state: Any, resp: Array) -> tuple[Array, Array]:
        """(sum_n r_nk E_k[T(x_n) | x_obs], shared statistics) for those rows: the
        expected statistics the M-step needs, as if the rows were complete."""
        ...

    def impute(self, params: Any, state: Any, resp: Array) -> Array:
        """E[x | x_obs] of every column of those rows, (n, n_features), in the user's
        coordinates, given the posteriors ``resp`` (the mixture keeps observed values)."""

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> ComponentFamily:
        """The bound family with these parameters known (held fixed by the M-step).

        ``fixed`` maps a name of :meth:`fitted_attributes` to the whole group (every
        component) or to a dict ``{component: value}``; None or ``{}`` fixes nothing.
        The M-step then maximizes Q (plus the log prior) over the free parameters given
        the fixed ones, and :meth:`n_parameters` counts only the free ones.
        """
        ...


# -- helpers the families share ------------------------------------------------------


def statistic_rows(out: Array | None, n_stats: int, n_rows: int, dtype: Any) -> Array:
    """The (n_stats, n_rows) statistic-major buffer to fill: ``out`` or a new one.

    Each statistic is one contiguous row, so forming them and the E-step run at memory
    speed; ``buffer.T`` is the (n_rows, n_stats) matrix T of the maths.
    """
    if out is None:
        return np.empty((n_stats, n_rows), dtype=dtype)
    if out.shape != (n_stats, n_rows):
        raise ValueError(f"statistics buffer has shape {out.shape}, need {(n_stats, n_rows)}")
    return out


def expanded_log_prob(T: Array, natural: Natural, offset: Array | None) -> Array:
    """``T @ eta.T - log_norm (+ offset)``, shape (n, K): the E-step's one matrix product."""
    log_prob = (natural.eta @ T.T).T  # (n, K) for statistic-major T
    log_prob -= natural.log_norm if offset is None else natural.log_norm - offset
    return log_prob


def expanded_roundoff(natural: Natural, nk: Array, sum_t: Array, dtype: Any) -> float:
    """Round-off (total nats) of the log-likelihood the E-step computes as
    ``T @ eta_k - A(eta_k)`` for statistics summing to (nk, sum_t): a few eps times the
    size of the terms that cancel, ``4 eps sum_k (|S_k| . |eta_k| + N_k |A(eta_k)|)``;
    0 where the family evaluates its densities in another, exact form."""
    if natural.exact_form:
        return 0.0
    eta = np.abs(np.asarray(natural.eta, dtype=np.float64))
    log_norm = np.abs(np.asarray(natural.log_norm, dtype=np.float64))
    size = float(np.sum(np.abs(sum_t) * eta) + np.abs(nk) @ log_norm)
    return 4.0 * float(np.finfo(dtype).eps) * size


def frozen_components(
    nk: Array, total_weight: float, pseudo_count: float = 0.0, stacklevel: int = 4
) -> NDArray[np.bool_]:
    """Components with no responsibility mass (and no prior), with a warning if any.

    Any parameters maximize such a component's (zero) share of the expected
    log-likelihood, so the families keep the previous ones rather than divide 0 by 0.
    A prior's pseudo-count makes the maximizer unique again (the prior's mode).
    """
    frozen: NDArray[np.bool_] = nk + pseudo_count <= 1e-12 * total_weight
    if frozen.any():
        warnings.warn(
            f"Component {int(np.argmax(frozen))} collapsed (no sample is assigned to it); "
            "its parameters are kept and its weight is ~0. Consider fewer components.",
            DegenerateComponentWarning,
            stacklevel=stacklevel + 1,
        )
    return frozen


class Fixed(NamedTuple):
    """Known values of one parameter group."""

    mask: NDArray[np.bool_]  # (K,) components whose values are known
    values: Array  # the group's full shape, (K, ...) (or one shared value); NaN where free


@dataclass(frozen=True)
class Group:
    """A parameter group a family can hold fixed, as the user names and shapes it.

    ``check`` returns what is wrong with one component's value (None if nothing);
    ``dof`` is the number of free parameters in one component's value (for BIC);
    ``pack`` turns the user's value for one component (or, with ``whole=True``, for all
    of them) into an array of ``shape`` (or ``(K, *shape)``); ``shared`` marks a group
    with one value for every component (a tied covariance).
    """

    name: str
    shape: tuple[int, ...]  # one component's value
    check: Callable[[Array], str | None]
    dof: int
    shared: bool = False
    pack: Callable[[Any, bool], Any] | None = None


def parse_fixed(
    family: str, fixed: Any, groups: Sequence[Group], n_components: int
) -> dict[str, Fixed]:
    """The known values of ``fixed`` (name -> whole group, or {component: value}),
    checked against the family's ``groups``: names, shapes, component indices, support."""
    if fixed is None:
        return {}
    names = [g.name for g in groups]
    if not isinstance(fixed, Mapping):
        raise InputError(
            f"The fixed parameters of the {family} family must be a dict of parameter name "
            f"-> value (names: {_quoted(names)}), got {type(fixed).__name__}."
        )
    for key in fixed:
        if key not in names:
            raise InputError(
                f"The {family} family has no parameter {key!r} to fix; the parameters it can "
                f"hold fixed are {_quoted(names)} (derived quantities such as precisions "
                "follow from them)."
            )
    K = n_components
    out: dict[str, Fixed] = {}
    for group in groups:
        if group.name not in fixed:
            continue
        value = fixed[group.name]
        if isinstance(value, Mapping):
            if group.shared:
                raise InputError(
                    f"fixed {group.name!r} of the {family} family is shared by all components: "
                    f"fix the whole of it (an array of shape {group.shape}), not a dict of "
                    "components."
                )
            mask = np.zeros(K, dtype=bool)
            values = np.full((K, *group.shape), np.nan)
            for k, v in value.items():
                if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < K:
                    raise InputError(
                        f"fixed {group.name!r} has the component {k!r}; components are the "
                        f"integers 0..{K - 1} (n_components={K})."
                    )
                values[k] = _as_array(group, v, group.shape, False, family)
                mask[k] = True
        else:
            shape = group.shape if group.shared else (K, *group.shape)
            values = _as_array(group, value, shape, not group.shared, family)
            mask = np.ones(K, dtype=bool)
        if not mask.any():
            continue
        for k in np.flatnonzero(mask) if not group.shared else [None]:
            problem = group.check(values if k is None else values[k])
            if problem is not None:
                which = "" if k is None else f" of component {k}"
                raise InputError(f"fixed {group.name!r}{which} {problem}")
        out[group.name] = Fixed(mask, values)
    return out


def _as_array(group: Group, value: Any, shape: tuple[int, ...], whole: bool, family: str) -> Array:
    """The user's value as a float64 array of ``shape``, or a clear error."""
    one = "a number" if group.shape == () else f"an array of shape {group.shape}"
    what = (
        f"an array of shape {shape}"
        if group.shared
        else f"an array of shape {shape} (all components) or a dict {{component: {one}}}"
        if whole
        else f"{one} for one component"
    )
    try:
        raw = group.pack(value, whole) if group.pack is not None else value
        arr = np.asarray(raw, dtype=np.float64)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"fixed {group.name!r} of the {family} family must be {what}, made of numbers; got "
            f"{value!r}."
        ) from exc
    if arr.shape != shape:
        raise InputError(
            f"fixed {group.name!r} of the {family} family must be {what}, got shape {arr.shape}."
        )
    return arr


def show(values: Any) -> str:
    """An array on one line, for an error message: ``[[1, 0.5], [0.5, 2]]``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        return f"{float(arr):g}"
    return "[" + ", ".join(show(row) for row in arr) + "]"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_positive(values: Array) -> str | None:
    """A ``Group.check``: finite and > 0."""
    if np.all(np.isfinite(values)) and np.all(values > 0):
        return None
    return f"must be finite and positive, got {show(values)}."


def check_finite(values: Array) -> str | None:
    """A ``Group.check``: finite."""
    if np.all(np.isfinite(values)):
        return None
    return f"must be finite, got {show(values)}."


def count_free(
    groups: Sequence[Group], fixed: Mapping[str, Fixed] | None, n_components: int
) -> int:
    """Free parameters of all components: each group's ``dof`` per component not fixed
    (once for a shared group)."""
    total = 0
    for group in groups:
        n_fixed = int(known(fixed, group.name, n_components).sum())
        if group.shared:
            total += 0 if n_fixed else group.dof
        else:
            total += (n_components - n_fixed) * group.dof
    return total


def check_distributions(offsets: Sequence[int]) -> Callable[[Array], str | None]:
    """A ``Group.check`` for probability vectors packed at ``offsets`` (length segments +
    1): positive (log 0 is -inf in the E-step) and each summing to 1."""

    def check(values: Array) -> str | None:
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            return (
                "must be positive probabilities (0 makes log p = -inf; use a tiny value such "
                f"as 1e-300 for an impossible category), got {show(values)}."
            )
        sums = np.add.reduceat(values, np.asarray(offsets[:-1]))
        if np.any(np.abs(sums - 1.0) > 1e-9):
            return f"must sum to 1 (per column), got sums {show(sums)}."
        return None

    return check


def known(fixed: Mapping[str, Fixed] | None, name: str, n_components: int) -> NDArray[np.bool_]:
    """(K,) components whose ``name`` is fixed (all False if the group is free)."""
    group = (fixed or {}).get(name)
    return group.mask if group is not None else np.zeros(n_components, dtype=bool)


def pattern_ids(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The distinct rows of a boolean matrix (missingness patterns): (index of a first
    row of each, each row's pattern index). Rows already ordered by their packed bytes (a
    fit sorts them so) are read as runs, without a sort."""
    keys = np.packbits(mask, axis=1)
    if keys.shape[1] > 8:
        keys = np.ascontiguousarray(keys)
        void = keys.view(np.dtype((np.void, keys.shape[1])))[:, 0]
        _, first, pattern = np.unique(void, return_index=True, return_inverse=True)
        return first, pattern.reshape(-1)
    # up to 64 columns: one integer per row, big-endian so that it orders as the bytes do
    wide = np.zeros((keys.shape[0], 8), dtype=np.uint8)
    wide[:, : keys.shape[1]] = keys
    key = wide.view(">u8").ravel()
    if key.shape[0] > 1 and (key[1:] >= key[:-1]).all():
        new = np.flatnonzero(key[1:] != key[:-1]) + 1
        step = np.zeros(key.shape[0], dtype=np.intp)
        step[new] = 1
        return np.concatenate([[0], new]), np.cumsum(step)
    _, first, pattern = np.unique(key, return_index=True, return_inverse=True)
    return first, pattern.reshape(-1)


def check_family(family: Any, what: str = "family") -> None:
    """Raise a clear error unless ``family`` is a family instance (e.g. ``Poisson()``).

    A family class or factory passed uncalled (``family=Poisson``) has a ``bind`` too,
    which then fails deep inside with a missing argument.
    """
    if isinstance(family, type) or (callable(family) and not hasattr(family, "bind")):
        name = getattr(family, "__name__", repr(family))
        kind = "class" if isinstance(family, type) else "function"
        raise InputTypeError(
            f"{what} must be a family instance such as {name}(), got the {kind} {name} "
            f"itself; call it: {what}={name}()."
        )
    if not hasattr(family, "bind"):
        raise InputTypeError(
            f"{what} must be an emkit family (e.g. emkit.families.Poisson()) or a Product of "
            f"them, got {type(family).__name__}."
        )


def column_label(labels: Sequence[str], j: int) -> str:
    """How an error message names column ``j``."""
    return labels[j] if j < len(labels) else f"column {j}"
