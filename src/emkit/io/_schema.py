"""The schema of every estimator's model file, as data, and the one validator.

Each estimator type has one :class:`Schema`: the dimensions its constructor parameters
set, every stored attribute (:class:`Field`: kind, dtype, shape in named dimensions,
value checks by name from :data:`CHECKS`), and relations between derived attributes
(:data:`RELATIONS`). :func:`validate` checks a model's parameters and attributes (decoded
from a file, or live before saving) against it and raises :class:`Invalid` at the first
entry that does not match. The component parameters of a ``MixtureModel`` are checked
against its family: their types and shapes are those of the family's own
``default_params``, their values pass the checks of :data:`COMPONENT_CHECKS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from emkit.exceptions import EmkitError
from emkit.families.covariance import covariance_types
from emkit.families.gaussian import covariance_structure
from emkit.inference.em import EMTrace

__all__ = [
    "CHECKS",
    "COMPONENT_CHECKS",
    "DERIVE",
    "RELATIONS",
    "SAVABLE",
    "SCHEMAS",
    "Field",
    "Invalid",
    "Schema",
    "check_dims",
    "derived_names",
    "validate",
]


# -- schemas: what each estimator's file holds, as data ----------------------------------


@dataclasses.dataclass(frozen=True)
class Field:
    """One stored attribute of an estimator's file.

    Parameters
    ----------
    kind : {'array', 'int', 'float', 'bool', 'trace', 'family', 'mixture', 'categories', \
'posteriors'}
        ``'trace'`` is an :class:`~emkit.inference.em.EMTrace` whose arrays have length
        ``T``; ``'family'`` a bound family of :mod:`emkit.families` over ``d`` columns;
        ``'mixture'`` its :class:`~emkit.models.MixtureParams` (weights and component
        parameters, checked against the family); ``'categories'`` a dict of column name
        -> list of distinct category values; ``'posteriors'`` a variational fit's
        posterior objects, checked against the family (:func:`_check_variational`).
    shape : tuple of str or int, or dict of parameter value -> tuple, optional
        For arrays: each axis a dimension name (bound by :attr:`Schema.dims`, or by the
        first array that uses it) or a length. A dict picks the shape by the value of
        the parameter ``by``.
    checks : tuple of str, or dict of parameter value -> tuple, default=()
        Names of value checks (:data:`CHECKS`), picked by ``by`` when a dict.
    by : str, optional
        The constructor parameter whose value picks ``shape`` and ``checks``.
    dtype : {'f', 'i', 'U'}, default='f'
        Arrays: floating point, integer, or text (string arrays load as object arrays).
    dim : str, optional
        For an ``'int'``: the dimension it sets (or must equal).
    optional : bool, default=False
        Present only after some fits (``feature_names_in_`` after a DataFrame).
    """

    kind: str
    shape: Any = None
    checks: Any = ()
    by: str | None = None
    dtype: str = "f"
    dim: str | None = None
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class Schema:
    """What one estimator type's file holds.

    ``dims`` maps a dimension name to the constructor parameter that sets it (a
    positive integer; with a trailing ``?``, None is allowed and the arrays set it);
    ``fields`` the stored attributes; ``relations`` pairs of attributes one of which is
    derived from the other (:data:`RELATIONS`), with the parameter that picks the
    covariance structure where it matters; ``derived`` names attributes recomputed on
    load from the stored ones (not stored).
    """

    dims: Mapping[str, str]
    fields: Mapping[str, Field]
    relations: tuple[tuple[str, str, str], ...] = ()
    derived: str | None = None


_COVARIANCE_SHAPES = {
    "full": ("K", "d", "d"),
    "tied": ("d", "d"),
    "diag": ("K", "d"),
    "spherical": ("K",),
}
_COVARIANCE_CHECKS = {"full": ("spd",), "tied": ("spd",), "diag": ("positive",)}
_COVARIANCE_CHECKS["spherical"] = ("positive",)
_FACTOR_CHECKS = {"full": ("cholesky",), "tied": ("cholesky",), "diag": ("positive",)}
_FACTOR_CHECKS["spherical"] = ("positive",)


def _layout(covariance_type: str) -> str:
    """The scikit-learn structure whose arrays a covariance type stores (mclust's
    models build on one of the four)."""
    structure = covariance_structure(covariance_type)
    return next(
        t
        for t in ("full", "tied", "diag", "spherical")
        if isinstance(structure, type(covariance_structure(t)))
    )


def _by_type(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` (by scikit-learn structure) for every covariance type."""
    return {name: table[_layout(name)] for name in covariance_types()}


_COVARIANCE_SHAPES = _by_type(_COVARIANCE_SHAPES)
_COVARIANCE_CHECKS = _by_type(_COVARIANCE_CHECKS)
_FACTOR_CHECKS = _by_type(_FACTOR_CHECKS)
_DENSE = tuple(t for t in covariance_types() if covariance_structure(t).dense)

_EM_FIELDS: dict[str, Field] = {
    "n_features_in_": Field("int", dim="d"),
    "feature_names_in_": Field("array", ("d",), ("names",), dtype="U", optional=True),
    "converged_": Field("bool"),
    "n_iter_": Field("int", checks=("nonnegative",)),
    "lower_bound_": Field("float", checks=("not_nan",)),
    "lower_bounds_": Field("array", ("T",), ("not_nan",)),
    "trace_": Field("trace"),
}

_MIXTURE_MODEL = Schema(
    dims={"K": "n_components"},
    fields={
        **_EM_FIELDS,
        "family_": Field("family"),
        "params_": Field("mixture"),
        "categories_": Field("categories", optional=True),
        # a variational fit's (e_step='variational'): q(theta) and q(pi); params_ holds
        # their means
        "posteriors_": Field("posteriors", optional=True),
        "weight_concentration_": Field("array", ("K",), ("positive",), optional=True),
        "weight_concentration_prior_": Field("float", checks=("positive",), optional=True),
    },
    derived="family_attributes",
)

_FACTOR_MIXTURE = {
    "weights_": Field("array", ("K",), ("simplex",)),
    "means_": Field("array", ("K", "d"), ("finite",)),
    "components_": Field("array", ("K", "q", "d"), ("finite",)),
    "covariances_": Field("array", ("K", "d", "d"), ("spd",)),
}

# the fitted attributes of a mixture with a Gaussian covariance structure
_GAUSSIAN_FIELDS: dict[str, Field] = {
    **_EM_FIELDS,
    "weights_": Field("array", ("K",), ("simplex",)),
    "means_": Field("array", ("K", "d"), ("finite",)),
    "covariances_": Field("array", _COVARIANCE_SHAPES, _COVARIANCE_CHECKS, by="covariance_type"),
    # positive-definite as U U^T (the relation below), with U checked
    "precisions_": Field("array", _COVARIANCE_SHAPES, ("finite",), by="covariance_type"),
    "precisions_cholesky_": Field(
        "array", _COVARIANCE_SHAPES, _FACTOR_CHECKS, by="covariance_type"
    ),
}
_GAUSSIAN_RELATIONS = (
    ("precisions_of_factor", "precisions_cholesky_", "precisions_"),
    ("covariances_of_factor", "precisions_cholesky_", "covariances_"),
)

SCHEMAS: dict[str, Schema] = {
    "GaussianMixture": Schema(
        dims={"K": "n_components"}, fields=_GAUSSIAN_FIELDS, relations=_GAUSSIAN_RELATIONS
    ),
    "MixtureModel": _MIXTURE_MODEL,
    "PoissonMixture": _MIXTURE_MODEL,
    "BernoulliMixture": _MIXTURE_MODEL,
    "CategoricalMixture": _MIXTURE_MODEL,
    "KMeans": Schema(
        dims={"K": "n_clusters"},
        fields={
            "n_features_in_": Field("int", dim="d"),
            "feature_names_in_": Field("array", ("d",), ("names",), dtype="U", optional=True),
            "cluster_centers_": Field("array", ("K", "d"), ("finite",)),
            "labels_": Field("array", ("n",), ("labels",), dtype="i"),
            "inertia_": Field("float", checks=("nonnegative",)),
            "n_iter_": Field("int", checks=("nonnegative",)),
            "converged_": Field("bool"),
            "trace_": Field("trace"),
            "_n_features_out": Field("int", dim="K"),
        },
    ),
    "PPCA": Schema(
        dims={"q": "n_components"},
        fields={
            **_EM_FIELDS,
            "components_": Field("array", ("q", "d"), ("finite",)),
            "mean_": Field("array", ("d",), ("finite",)),
            "noise_variance_": Field("float", checks=("positive",)),
        },
    ),
    "FactorAnalysis": Schema(
        dims={"q": "n_components?"},
        fields={
            **_EM_FIELDS,
            "components_": Field("array", ("q", "d"), ("finite",)),
            "mean_": Field("array", ("d",), ("finite",)),
            "noise_variance_": Field("array", ("d",), ("positive",)),
            # scikit-learn's total log-likelihood after each iteration
            "loglike_": Field("array", ("T",), ("not_nan",)),
        },
    ),
    "MixtureOfPPCA": Schema(
        dims={"K": "n_components", "q": "n_factors"},
        fields={
            **_EM_FIELDS,
            **_FACTOR_MIXTURE,
            "noise_variance_": Field("array", ("K",), ("positive",)),
        },
        relations=(("factor_covariances", "components_", "covariances_"),),
    ),
    "MixtureOfFactorAnalyzers": Schema(
        dims={"K": "n_components", "q": "n_factors"},
        fields={
            **_EM_FIELDS,
            **_FACTOR_MIXTURE,
            "noise_variance_": Field("array", ("K", "d"), ("positive",)),
        },
        relations=(("factor_covariances", "components_", "covariances_"),),
    ),
    # a t mixture: a Gaussian mixture's fields (the scale matrices as covariances_) and nu
    "StudentTMixture": Schema(
        dims={"K": "n_components"},
        fields={
            **_GAUSSIAN_FIELDS,
            "degrees_of_freedom_": Field("array", ("K",), ("positive",)),
        },
        relations=_GAUSSIAN_RELATIONS,
    ),
    # variational posteriors: Gaussian fields as fitted (E[Lambda]^-1 as covariances_), the
    # Normal-Wishart's and the weights' parameters, and the resolved priors
    "BayesianGaussianMixture": Schema(
        dims={"K": "n_components"},
        fields={
            **_GAUSSIAN_FIELDS,
            "weight_concentration_": Field(
                "array",
                {"dirichlet_process": (2, "K"), "dirichlet_distribution": ("K",)},
                ("positive",),
                by="weight_concentration_prior_type",
            ),
            "mean_precision_": Field("array", ("K",), ("positive",)),
            "degrees_of_freedom_": Field(
                "array",
                {"full": ("K",), "tied": (), "diag": ("K",), "spherical": ("K",)},
                ("positive",),
                by="covariance_type",
            ),
            "weight_concentration_prior_": Field("float", checks=("positive",)),
            "mean_precision_prior_": Field("float", checks=("positive",)),
            "mean_prior_": Field("array", ("d",), ("finite",)),
            "degrees_of_freedom_prior_": Field("float", checks=("positive",)),
            "covariance_prior_": Field(
                "array",
                {"full": ("d", "d"), "tied": ("d", "d"), "diag": ("d",), "spherical": ()},
                {
                    "full": ("spd",),
                    "tied": ("spd",),
                    "diag": ("positive",),
                    "spherical": ("positive",),
                },
                by="covariance_type",
            ),
        },
        relations=_GAUSSIAN_RELATIONS,
    ),
}

# The estimators save_model stores.
SAVABLE = tuple(sorted(SCHEMAS))

# Value checks of the component parameters a MixtureModel file holds, by parameter
# tuple and field (their shapes come from the family: those of its default_params).
COMPONENT_CHECKS: dict[str, Any] = {
    "PoissonParams.rates": ("positive",),
    "ExponentialParams.rates": ("positive",),
    "BernoulliParams.probabilities": ("open_unit",),
    "CategoricalParams.probabilities": ("distributions",),
    "MultinomialParams.probabilities": ("simplex",),
    "GammaParams.shapes": ("positive",),
    "GammaParams.rates": ("positive",),
    "BetaParams.a": ("positive",),
    "BetaParams.b": ("positive",),
    "GaussianParams.means": ("finite",),
    "GaussianParams.covariances": {"dense": ("spd",), "variances": ("positive",)},
    "GaussianParams.precisions_cholesky": {"dense": ("cholesky",), "variances": ("positive",)},
    "GaussianParams.mended": ("bool",),
    # the last M-step's measured shortfall (a float; NaN: not measured): read by no
    # prediction
    "GaussianParams.gap": (),
}


# -- value checks: each returns what is wrong (None if nothing) ---------------------------


def _problem_values(values: NDArray[Any], *, bad: NDArray[np.bool_], what: str) -> str | None:
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    at = f" at index {index}" if index else ""
    return f"must be {what}, got {values[index].item()!r}{at}"


def _finite(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    return _problem_values(v, bad=~np.isfinite(v), what="finite (no NaN or infinity)")


def _not_nan(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    return _problem_values(v, bad=np.isnan(v), what="a number (not NaN)")


def _positive(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    return _problem_values(v, bad=~(np.isfinite(v) & (v > 0)), what="finite and > 0")


def _nonnegative(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    return _problem_values(v, bad=~(np.isfinite(v) & (v >= 0)), what="finite and >= 0")


def _open_unit(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    return _problem_values(v, bad=~((v > 0) & (v < 1)), what="probabilities in (0, 1)")


def _sums_to_one(sums: NDArray[Any], n: int) -> str | None:
    off = np.abs(sums - 1.0) > 1e-6 * max(n, 1)
    if off.any():
        where = tuple(int(i) for i in np.argwhere(off)[0]) if off.ndim else ()
        at = f" at index {where}" if where else ""
        return f"must sum to 1 (weights on the simplex), got a sum of {float(sums[where])!r}{at}"
    return None


def _simplex(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    problem = _nonnegative(v, ctx)
    if problem is not None:
        return problem.replace("finite and >= 0", "probabilities (finite and >= 0)")
    return _sums_to_one(v.sum(axis=-1), v.shape[-1])


def _distributions(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    """Categorical probabilities packed by column: each column's block sums to 1."""
    problem = _positive(v, ctx)
    if problem is not None:
        return problem.replace("finite and > 0", "probabilities (finite and > 0)")
    offsets = ctx["offsets"]
    return _sums_to_one(np.add.reduceat(v, offsets[:-1], axis=-1), int(np.max(np.diff(offsets))))


def _spd(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    """Every trailing (d, d) matrix symmetric positive-definite."""
    problem = _finite(v, ctx)
    if problem is not None:
        return problem
    mats = v.reshape(-1, *v.shape[-2:])
    scale = np.max(np.abs(mats), axis=(-2, -1), initial=0.0)[:, None, None]
    asymmetric = np.abs(mats - np.swapaxes(mats, -1, -2)) > 1e-8 * scale
    try:
        np.linalg.cholesky(mats)  # the whole stack at once; find the culprit if it fails
        failed = None
    except np.linalg.LinAlgError:
        failed = next(i for i, m in enumerate(mats) if np.linalg.eigvalsh(m).min() <= 0)
    for i in range(mats.shape[0]):
        at = f" (matrix {i})" if v.ndim > 2 else ""
        if asymmetric[i].any():
            return f"must be symmetric{at}"
        if i == failed:
            low = float(np.linalg.eigvalsh(mats[i]).min())
            return f"must be positive-definite{at}, got a smallest eigenvalue of {low!r}"
    return None


def _cholesky(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    """Upper-triangular factors with a positive diagonal (so U U^T is positive-definite)."""
    problem = _finite(v, ctx)
    if problem is not None:
        return problem
    # the factors come from a triangular solve: round-off below the diagonal is allowed
    if np.any(np.abs(np.tril(v, -1)) > 1e-8 * float(np.max(np.abs(v), initial=0.0))):
        return "must be upper triangular (a Cholesky factor of the precision)"
    diag = np.diagonal(v, axis1=-2, axis2=-1)
    return _problem_values(diag, bad=~(diag > 0), what="a factor with a positive diagonal")


def _labels(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    K = ctx["dims"]["K"]
    return _problem_values(v, bad=(v < 0) | (v >= K), what=f"labels in 0..{K - 1}")


def _names(v: NDArray[Any], ctx: Mapping[str, Any]) -> str | None:
    if len(set(v.tolist())) != v.shape[0]:
        return "must be distinct column names"
    return None


def _is_bool(v: Any, ctx: Mapping[str, Any]) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


# Value checks by name, as the schemas name them.
CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    "finite": _finite,
    "not_nan": _not_nan,
    "positive": _positive,
    "nonnegative": _nonnegative,
    "open_unit": _open_unit,
    "simplex": _simplex,
    "distributions": _distributions,
    "spd": _spd,
    "cholesky": _cholesky,
    "labels": _labels,
    "names": _names,
    "bool": _is_bool,
}


def _precisions(factor: NDArray[Any], dense: bool) -> NDArray[Any]:
    # P = U U^T for dense structures, u^2 for variances
    return factor @ np.swapaxes(factor, -1, -2) if dense else factor**2


def _rtol(*arrays: NDArray[Any]) -> float:
    """Relative tolerance of a recomputed quantity: round-off of the arrays' precision."""
    eps = max(float(np.finfo(a.dtype).eps) for a in arrays if a.dtype.kind == "f")
    return max(1e-8, 1e3 * eps)


def _precisions_of_factor(factor: Any, precisions: Any, dense: bool, _: Any = None) -> str | None:
    expected = _precisions(factor, dense)
    scale = float(np.max(np.abs(expected), initial=0.0))
    rtol = _rtol(factor, precisions)
    if not np.allclose(precisions, expected, rtol=rtol, atol=rtol * 1e-2 * scale):
        return "must equal U U^T for U = precisions_cholesky_ (the precisions it comes from)"
    return None


def _covariances_of_factor(
    factor: Any, covariances: Any, dense: bool, attributes: Mapping[str, Any] | None = None
) -> str | None:
    # cov = (U U^T)^-1  <=>  cov P = I with P = U U^T (the stored precisions_ where there
    # are some: already checked to be U U^T), up to round-off that grows with cond(cov),
    # bounded by ||cov||_F ||P||_F (cheaper than the SVD that cond() takes)
    eps = max(float(np.finfo(a.dtype).eps) for a in (factor, covariances))
    if dense:
        stored = (attributes or {}).get("precisions_")
        precisions = _precisions(factor, dense) if stored is None else stored
        error = np.abs(covariances @ precisions - np.eye(factor.shape[-1])).max(axis=(-2, -1))
        cond = np.linalg.norm(covariances, axis=(-2, -1)) * np.linalg.norm(
            precisions, axis=(-2, -1)
        )
    else:
        error, cond = np.abs(covariances * factor**2 - 1.0), np.ones(np.shape(covariances))
    if np.any(error > np.maximum(1e-6, 1e2 * eps * cond)):
        return "must be the inverse of the precisions (U U^T)^-1 for U = precisions_cholesky_"
    return None


def _factor_covariances(
    components: Any, covariances: Any, dense: bool, attributes: Mapping[str, Any]
) -> str | None:
    noise = attributes["noise_variance_"]
    W = np.swapaxes(components, -1, -2)  # (K, d, q)
    noise = np.broadcast_to(np.reshape(noise, (noise.shape[0], -1)), covariances.shape[:-1])
    expected = W @ components
    idx = np.arange(expected.shape[-1])
    expected[..., idx, idx] += noise
    scale = float(np.max(np.abs(expected), initial=0.0))
    rtol = _rtol(components, covariances)
    if not np.allclose(covariances, expected, rtol=rtol, atol=rtol * 1e-2 * scale):
        return "must equal W W^T + diag(noise_variance_) for W = components_"
    return None


# Relations between a stored attribute and one derived from it: (source, derived, whether
# covariances are dense matrices, all attributes) -> what is wrong (None if nothing).
RELATIONS: dict[str, Callable[[Any, Any, bool, Mapping[str, Any]], str | None]] = {
    "precisions_of_factor": _precisions_of_factor,
    "covariances_of_factor": _covariances_of_factor,
    "factor_covariances": _factor_covariances,
}


# -- validation: one validator for every schema ------------------------------------------


class Invalid(Exception):
    """An entry that does not match its schema: (entry, what is wrong)."""

    def __init__(self, entry: str, problem: str) -> None:
        super().__init__(f"{entry} {problem}")
        self.entry = entry
        self.problem = problem


def check_dims(name: str, params: Mapping[str, Any]) -> dict[str, int]:
    """The dimensions the constructor parameters of estimator ``name`` set (checked to
    be positive integers)."""
    dims: dict[str, int] = {}
    for dim, param in SCHEMAS[name].dims.items():
        # "name?": None is allowed too, and the arrays then set the dimension
        param, optional = param.removesuffix("?"), param.endswith("?")
        value = params.get(param)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise Invalid(f"the parameter {param}", f"must be an integer >= 1, got {value!r}")
        dims[dim] = int(value)
    return dims


def validate(name: str, params: Mapping[str, Any], attributes: Mapping[str, Any]) -> None:
    """Check fitted ``attributes`` (and the parameters that shape them) against the
    schema of estimator ``name``; raise :class:`Invalid` at the first problem."""
    schema = SCHEMAS[name]
    dims = check_dims(name, params)
    for key in attributes:
        if key not in schema.fields:
            raise Invalid(
                f"the attribute {key}",
                f"is not one a {name} has (expected: {', '.join(sorted(schema.fields))})",
            )
    for key, spec in schema.fields.items():
        if key not in attributes:
            if spec.optional:
                continue
            raise Invalid(f"the attribute {key}", "is missing")
        _check_field(key, spec, attributes[key], params, dims)
    # dense: (d, d) covariance matrices (GaussianMixture's full and tied, factor models)
    dense = params.get("covariance_type", "full") in _DENSE
    for relation, source, derived in schema.relations:
        problem = RELATIONS[relation](attributes[source], attributes[derived], dense, attributes)
        if problem is not None:
            raise Invalid(f"the attribute {derived}", problem)
    if schema.derived == "family_attributes":
        _check_mixture_model(attributes, dims["K"], attributes.get("feature_names_in_"))
        _check_variational(attributes, params, dims["K"])


def _pick(value: Any, spec: Field, params: Mapping[str, Any]) -> Any:
    """``value``, or its entry for the parameter ``spec.by`` when it is a dict."""
    if spec.by is None or not isinstance(value, Mapping):
        return value
    choice = params.get(spec.by)
    if not isinstance(choice, str) or choice not in value:
        raise Invalid(
            f"the parameter {spec.by}",
            f"must be one of {', '.join(map(repr, value))}, got {choice!r}",
        )
    return value[choice]


def _check_field(
    key: str, spec: Field, value: Any, params: Mapping[str, Any], dims: dict[str, int]
) -> None:
    entry = f"the attribute {key}"
    kind = spec.kind
    if kind in ("int", "float", "bool"):
        types = {"int": int | np.integer, "float": float | np.floating, "bool": bool | np.bool_}
        is_bool = isinstance(value, bool | np.bool_)
        if is_bool != (kind == "bool") or not isinstance(value, types[kind]):
            raise Invalid(entry, f"must be {'an' if kind == 'int' else 'a'} {kind}, got {value!r}")
        if spec.dim is not None:
            _bind(dims, spec.dim, int(value), entry, key)
        _run_checks(entry, spec.checks, np.asarray(value, dtype=np.float64), {"dims": dims})
    elif kind == "array":
        _check_array(entry, value, _pick(spec.shape, spec, params), spec.dtype, dims)
        checks = _pick(spec.checks, spec, params)
        _run_checks(entry, checks, value, {"dims": dims})
    elif kind == "trace":
        if type(value) is not EMTrace:
            raise Invalid(entry, f"must be an EMTrace, got {type(value).__name__}")
        for field in ("objective", "seconds"):
            _check_array(f"{entry}.{field}", getattr(value, field), ("T",), "f", dims)
        _check_trace_reports(entry, value, dims.get("T", 0))
    elif kind == "family":
        _check_family(entry, value, dims)
    elif kind == "mixture":
        _check_mixture(entry, value, dims)
    elif kind == "categories":
        _check_categories(entry, value)
    elif kind == "posteriors":
        pass  # against the family: _check_variational
    else:  # pragma: no cover - a schema bug
        raise AssertionError(kind)


def _check_trace_reports(entry: str, trace: EMTrace, n_iter: int) -> None:
    """An EMTrace's ``restarts`` (iterations 1..T) and ``degenerate`` (a flag a component,
    or none)."""
    restarts, degenerate = trace.restarts, trace.degenerate
    if not (
        isinstance(restarts, np.ndarray)
        and restarts.ndim == 1
        and restarts.dtype.kind in "iu"
        and np.all((restarts >= 1) & (restarts <= n_iter))
    ):
        raise Invalid(f"{entry}.restarts", f"must be a 1-D integer array of iterations 1..{n_iter}")
    if not (
        isinstance(degenerate, np.ndarray) and degenerate.ndim == 1 and degenerate.dtype == bool
    ):
        raise Invalid(f"{entry}.degenerate", "must be a 1-D boolean array (a flag a component)")
    bound = trace.bound
    if not (
        isinstance(bound, np.ndarray)
        and bound.dtype.kind == "f"
        and bound.shape in ((0,), (n_iter,))
    ):
        raise Invalid(f"{entry}.bound", f"must be a float array of length 0 or {n_iter}")
    draws = trace.draws
    if not (
        isinstance(draws, np.ndarray)
        and draws.dtype.kind in "iu"
        and draws.shape in ((0,), (n_iter,))
        and np.all(draws >= 1)
    ):
        raise Invalid(f"{entry}.draws", f"must be an integer array >= 1 of length 0 or {n_iter}")


def _bind(dims: dict[str, int], dim: str, size: int, entry: str, source: str) -> None:
    if size < 1 and dim == "d":
        raise Invalid(entry, f"must be an integer >= 1, got {size}")
    if dim in dims and dims[dim] != size:
        raise Invalid(entry, f"must be {dims[dim]} ({dim}), got {size}")
    dims[dim] = size


_DTYPES = {"f": ("f", "a float array"), "i": ("iu", "an integer array"), "U": ("UO", "text")}


def _check_array(
    entry: str, value: Any, shape: tuple[Any, ...], dtype: str, dims: dict[str, int]
) -> None:
    kinds, described = _DTYPES[dtype]
    if not isinstance(value, np.ndarray):
        raise Invalid(entry, f"must be {described}, got a {type(value).__name__}")
    if value.dtype.kind not in kinds or (
        dtype == "U" and value.dtype.kind == "O" and not all(isinstance(v, str) for v in value.flat)
    ):
        raise Invalid(entry, f"must be {described}, got dtype {value.dtype}")
    expected = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if value.ndim != len(shape):
        raise Invalid(entry, f"must have shape {expected}, got shape {value.shape}")
    for axis, (size, want) in enumerate(zip(value.shape, shape, strict=True)):
        if isinstance(want, int):
            ok = size == want
        elif want in dims:
            ok = size == dims[want]
        else:
            dims[want], ok = size, True
        if not ok:
            sizes = tuple(s if isinstance(s, int) else dims.get(s, s) for s in shape)
            raise Invalid(
                entry,
                f"must have shape {expected} = {sizes}, got shape {value.shape} (axis {axis})",
            )


def _run_checks(entry: str, checks: Any, value: Any, ctx: Mapping[str, Any]) -> None:
    for check in checks:
        problem = CHECKS[check](value, ctx)
        if problem is not None:
            raise Invalid(entry, problem)


def _family_types() -> tuple[type[Any], ...]:
    import emkit.families as fam

    return (
        fam.Poisson,
        fam.Bernoulli,
        fam.Categorical,
        fam.Exponential,
        fam.Gamma,
        fam.Beta,
        fam.Multinomial,
        fam.GaussianFamily,
        fam.LogNormalFamily,
        fam.Product,
    )


def _check_family(entry: str, family: Any, dims: dict[str, int]) -> None:
    from emkit.families import Product

    if not isinstance(family, _family_types()):
        raise Invalid(entry, f"must be a family of emkit.families, got {type(family).__name__}")
    parts = (
        [(name, cols, fam) for name, (cols, fam) in family.blocks.items()]
        if isinstance(family, Product)
        else [("", None, family)]
    )
    seen: list[int] = []
    part: Any
    for block, columns, part in parts:
        where = entry if columns is None else f"{entry}.blocks[{block!r}]"
        if isinstance(part, Product) or not isinstance(part, _family_types()):
            raise Invalid(where, f"must be a family of emkit.families, got {type(part).__name__}")
        try:
            n = int(part.n_features)
        except (EmkitError, AttributeError, TypeError, ValueError, IndexError):
            raise Invalid(where, "must be a family bound to the training data") from None
        if columns is not None:
            if not (
                isinstance(columns, tuple)
                and all(isinstance(c, int) and not isinstance(c, bool) for c in columns)
                and len(columns) == n
            ):
                raise Invalid(where, f"must name its {n} columns by position, got {columns!r}")
            seen.extend(columns)
        _check_family_arrays(where, part)
    total = len(seen) if isinstance(family, Product) else n
    if isinstance(family, Product) and sorted(seen) != list(range(total)):
        raise Invalid(entry, f"must cover the columns 0..{total - 1} once each, got {seen}")
    _bind(dims, "d", total, entry, "family_")


def _check_family_arrays(where: str, family: Any) -> None:
    """Every float array a bound family holds (shift, scales, tables, priors) is finite,
    and its table of log-factorials (Poisson, Multinomial) is one."""
    stack = [(where, family)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind == "f":
                _run_checks(path, ("finite",), obj, {})
            if path.endswith(".log_factorial"):  # the table log(x!) for x = 0, 1, ...
                table = gammaln(np.arange(obj.shape[0], dtype=np.float64) + 1.0)
                if obj.ndim != 1 or not np.allclose(obj, table, rtol=1e-12, atol=0.0):
                    raise Invalid(path, "must be the table log(x!) for x = 0, 1, 2, ...")
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(
                (f"{path}.{f.name}", getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if f.name != "fixed"
            )
        elif isinstance(obj, tuple | list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(obj))
        elif isinstance(obj, float) and not math.isfinite(obj):
            raise Invalid(path, f"must be finite, got {obj!r}")


def _check_mixture(entry: str, params: Any, dims: dict[str, int]) -> None:
    from emkit.models import MixtureParams

    if type(params) is not MixtureParams:
        raise Invalid(entry, f"must be MixtureParams, got {type(params).__name__}")
    _check_array(f"{entry}.weights", params.weights, ("K",), "f", dims)
    _run_checks(f"{entry}.weights", ("simplex",), params.weights, {})


def _check_components(entry: str, family: Any, components: Any, n_components: int) -> None:
    """The component parameters have the types and shapes of the family's own
    ``default_params`` and pass the value checks of :data:`COMPONENT_CHECKS`."""
    from emkit.families import Categorical, LogNormalFamily, Product

    if isinstance(family, Product):
        blocks = list(family.blocks.items())
        if not isinstance(components, tuple) or len(components) != len(blocks):
            raise Invalid(entry, f"must be a tuple of {len(blocks)} blocks' parameters")
        for (name, (_, part)), comp in zip(blocks, components, strict=True):
            _check_components(f"{entry}[{name!r}]", part, comp, n_components)
        return
    expected = family.default_params(n_components)
    if type(components) is not type(expected):
        raise Invalid(entry, f"must be {type(expected).__name__}, got {type(components).__name__}")
    gaussian = family.gaussian if isinstance(family, LogNormalFamily) else family
    ctx: dict[str, Any] = {"dims": {}}
    if isinstance(family, Categorical):  # where each column's categories start and end
        ctx["offsets"] = np.asarray(family._offsets())
    layout = (
        "dense" if getattr(getattr(gaussian, "structure", None), "dense", False) else "variances"
    )
    for field, value, like in zip(expected._fields, components, expected, strict=True):
        where = f"{entry}.{field}"
        checks = COMPONENT_CHECKS.get(f"{type(expected).__name__}.{field}", ("finite",))
        if isinstance(checks, dict):
            checks = checks[layout]
        if isinstance(like, np.ndarray):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise Invalid(where, f"must be a float array, got {type(value).__name__}")
            if value.shape != like.shape:
                raise Invalid(where, f"must have shape {like.shape}, got shape {value.shape}")
        _run_checks(where, checks, value, ctx)
    if type(expected).__name__ == "GaussianParams":
        problem = _covariances_of_factor(
            components.precisions_cholesky, components.covariances, layout == "dense"
        )
        if problem is not None:
            raise Invalid(f"{entry}.covariances", problem)


def _check_categories(entry: str, categories: Any) -> None:
    if not isinstance(categories, dict):
        raise Invalid(entry, f"must be a dict of column -> categories, got {categories!r}")
    for column, values in categories.items():
        if not isinstance(column, str) or not isinstance(values, list) or not values:
            raise Invalid(
                f"{entry}[{column!r}]", f"must be a non-empty list of categories, got {values!r}"
            )
        if len(set(values)) != len(values):
            raise Invalid(f"{entry}[{column!r}]", f"must be distinct categories, got {values!r}")


def _check_mixture_model(
    attributes: Mapping[str, Any], n_components: int, feature_names: Any
) -> None:
    """What ties a MixtureModel's parts together: the components fit the family, the
    category maps name columns of the data."""
    _check_components(
        "the attribute params_.components",
        attributes["family_"],
        attributes["params_"].components,
        n_components,
    )
    # the family's own use of them: natural parameters in both working precisions
    family, components = attributes["family_"], attributes["params_"].components
    for dtype in (np.float64, np.float32):
        try:
            with np.errstate(all="ignore"):
                natural = family.natural(components, dtype)
            usable = np.isfinite(natural.eta).all() and np.isfinite(natural.log_norm).all()
        except (EmkitError, ValueError, TypeError, IndexError) as exc:
            raise Invalid("the attribute family_", f"does not fit params_ ({exc})") from None
        if not usable:
            raise Invalid(
                "the attribute params_", "must give finite natural parameters under family_"
            )
    categories = attributes.get("categories_")
    if categories:
        names = [] if feature_names is None else list(feature_names)
        for column in categories:
            if column not in names:
                raise Invalid(
                    f"the attribute categories_[{column!r}]",
                    f"must name a column of feature_names_in_ ({names})",
                )


_VARIATIONAL_FIELDS = ("posteriors_", "weight_concentration_", "weight_concentration_prior_")


def _check_variational(
    attributes: Mapping[str, Any], params: Mapping[str, Any], n_components: int
) -> None:
    """A variational fit's posteriors: there exactly when ``e_step='variational'``, of
    the types and shapes the family's conjugate update gives, proper, and with ``params_``
    their posterior means (what predictions use)."""
    from emkit.families import Product
    from emkit.families.variational import point_params, variational

    present = [name for name in _VARIATIONAL_FIELDS if name in attributes]
    if params.get("e_step") != "variational":
        if present:
            raise Invalid(
                f"the attribute {present[0]}",
                f"is a variational fit's, but e_step is {params.get('e_step')!r}",
            )
        return
    for name in _VARIATIONAL_FIELDS:
        if name not in attributes:
            raise Invalid(f"the attribute {name}", "is missing (e_step='variational' stores it)")
    prior = params.get("weight_concentration_prior")
    alpha0 = 1.0 / n_components if prior is None else float(prior)
    stored_alpha0 = float(attributes["weight_concentration_prior_"])
    if not math.isclose(stored_alpha0, alpha0, rel_tol=1e-12):
        raise Invalid(
            "the attribute weight_concentration_prior_",
            f"must be the Dirichlet prior's alpha_0 = {alpha0!r} (weight_concentration_prior), "
            f"got {stored_alpha0!r}",
        )
    alpha = attributes["weight_concentration_"]
    if np.any(alpha < alpha0 * (1.0 - 1e-12)):
        raise Invalid(
            "the attribute weight_concentration_",
            f"must be alpha_0 + N_k >= alpha_0 = {alpha0!r}, got {alpha.tolist()!r}",
        )
    try:
        family = variational(attributes["family_"])
    except EmkitError as exc:
        raise Invalid("the attribute family_", f"has no variational update ({exc})") from None
    posteriors = attributes["posteriors_"]
    expected = family.default_params(n_components)
    if isinstance(family, Product):
        names = list(family.blocks)
        if not isinstance(posteriors, dict) or list(posteriors) != names:
            raise Invalid("the attribute posteriors_", f"must be a dict of the blocks {names}")
        components = tuple(posteriors[name] for name in names)
        parts = [(f"[{n!r}]", posteriors[n], e) for n, e in zip(names, expected, strict=True)]
    else:
        components = posteriors
        parts = [("", posteriors, expected)]
    for where, posterior, like in parts:
        _check_posterior(f"the attribute posteriors_{where}", posterior, like)
    mixture = attributes["params_"]
    weights = alpha / np.sum(alpha)
    if not np.allclose(mixture.weights, weights, rtol=1e-9, atol=0.0):
        raise Invalid(
            "the attribute weight_concentration_",
            "must give params_.weights as its mean alpha / sum(alpha)",
        )
    means = point_params(family, components)
    flat_means = means if isinstance(family, Product) else (means,)
    flat_stored = mixture.components if isinstance(family, Product) else (mixture.components,)
    for (where, _, _), mean, stored in zip(parts, flat_means, flat_stored, strict=True):
        for field, m, v in zip(mean._fields, mean, stored, strict=True):
            if not np.allclose(v, m, rtol=1e-9, atol=0.0):
                raise Invalid(
                    f"the attribute posteriors_{where}",
                    f"must give params_.components{where}.{field} as its posterior mean",
                )


def _check_posterior(entry: str, posterior: Any, like: Any) -> None:
    """One block's posterior: the type, stored state and shapes of ``like`` (the family's
    own), finite, proper (> 0), and its parameters one more than their stored excess."""
    if type(posterior) is not type(like):
        raise Invalid(entry, f"must be a {type(like).__name__}, got {type(posterior).__name__}")
    state, expected = vars(posterior), vars(like)
    if set(state) != set(expected):
        raise Invalid(entry, f"must hold {sorted(expected)}, got {sorted(state)}")
    for name, value in expected.items():
        where = f"{entry}.{name}"
        got = state[name]
        if name == "_offsets":
            if (value is None) != (got is None) or (
                value is not None and not np.array_equal(got, value)
            ):
                raise Invalid(where, f"must be the family's category offsets {value!r}")
            continue
        if not isinstance(got, np.ndarray) or got.dtype.kind != "f":
            raise Invalid(where, f"must be a float array, got {type(got).__name__}")
        if got.shape != np.shape(value):
            raise Invalid(where, f"must have shape {np.shape(value)}, got shape {got.shape}")
        _run_checks(where, ("finite",) if name.startswith("_") else ("positive",), got, {})
    pairs = (("shape", "_excess"), ("concentration", "_excess"), ("a", "_excess_a"))
    for public, excess in (*pairs, ("b", "_excess_b")):
        if public in state and excess in state:
            if not np.allclose(state[public], 1.0 + state[excess], rtol=1e-12, atol=0.0):
                raise Invalid(f"{entry}.{public}", f"must be 1 + {excess}")


def _family_attributes(estimator: Any) -> None:
    """Recompute a MixtureModel's derived attributes and re-apply its known parameters."""
    from emkit.families import Product
    from emkit.models.mixture import fixed_weights

    K = int(estimator.n_components)
    fixed = dict(estimator.fixed or {})
    alpha = float(estimator.weight_concentration)
    estimator._fixed_weights = fixed_weights(fixed.pop("weights", None), K, alpha)
    family = estimator.family_.fix(fixed, K)
    estimator.family_ = family
    params = estimator.params_
    estimator.weights_ = params.weights
    estimator.component_params_ = family.fitted_attributes(params.components)
    if not isinstance(family, Product):
        for name, value in estimator.component_params_.items():
            setattr(estimator, f"{name}_", value)


DERIVE: dict[str, Callable[[Any], None]] = {"family_attributes": _family_attributes}


def derived_names(estimator: Any) -> set[str]:
    """The attributes a schema's ``derived`` step sets (not stored)."""
    if SCHEMAS[type(estimator).__name__].derived is None:
        return set()
    names = {"weights_", "component_params_"}
    family = getattr(estimator, "family_", None)
    params = getattr(estimator, "params_", None)
    if family is not None and params is not None and type(family).__name__ != "Product":
        names |= {f"{n}_" for n in family.fitted_attributes(params.components)}
    return names
