"""Safe model files: JSON metadata plus arrays in one NumPy ``.npz``, never pickle.

What a file holds
-----------------
A model file is a ZIP archive written by :func:`numpy.savez`. It holds every stored
array and an entry ``metadata.json``: the JSON text as a 0-d unicode array, so the whole
file loads with ``allow_pickle=False``. The metadata names the format and its version,
the estimator class, its constructor parameters and the fitted attributes::

    {"format": "emkit-model", "format_version": 1, "emkit_version": "0.1.0",
     "estimator": "GaussianMixture", "params": {...},
     "attributes": {"weights_": {"kind": "array", "key": "attr.weights_", ...},
                    "converged_": {"kind": "scalar", "type": "bool", "value": true},
                    "trace_": {"kind": "tuple", "type": "emkit.inference.em.EMTrace",
                               "fields": {"objective": {...}, "seconds": {...}}},
                    "family_": {"kind": "value", "value": {"object": ..., "fields": ...}}}}

Parameters and ``"value"`` attributes use one tagged encoding: JSON numbers, strings,
booleans, null and lists as themselves; ``{"float": "inf"}`` for non-finite floats,
``{"array": key}`` for an array in the archive, ``{"tuple": [...]}``, ``{"dict": [[key,
value], ...]}`` (keys keep their type, e.g. the component numbers of ``fixed=``), and
``{"object": name, "fields": {...}}`` / ``{"namedtuple": name, "fields": {...}}`` for
emkit's families, priors, covariance structures and parameter tuples, by their public
names (an allow-list: nothing else is ever rebuilt). A :class:`~emkit.MixtureModel` file
stores the bound family (``family_``: its data-dependent settings such as the Gaussian
centring shift, category counts or a prior drawn from the data), the parameters
(``params_``), ``categories_`` and ``feature_names_in_``; the family's user-facing
attributes (``weights_``, ``component_params_``, ``rates_``...) are recomputed from
those on load, and known parameters (``fixed=``) are re-applied from the stored
parameter, through the same checks as in ``fit``, so ``n_parameters``/``bic`` count the
same free parameters.

Validation
----------
Loading checks the whole file against its estimator's schema (:data:`SCHEMAS`: one
description per estimator type, as data) before an estimator is built: the parameters
that set dimensions (``n_components``...) are positive integers and the estimator's own
parameter checks pass; every attribute the schema names is present and no other; each has
its kind, dtype and shape (``K`` components, ``d`` features, ...); values are finite
where they must be, variances positive, covariances symmetric positive-definite,
precision Cholesky factors upper triangular with a positive diagonal, weights and
probabilities on the simplex, labels in range; derived attributes agree with the ones
they come from (``precisions_`` with ``precisions_cholesky_``...). A file that fails is
refused with a :class:`~emkit.ModelFileError` naming the file, the entry and what was
expected. :func:`save_model` runs the same checks, so it never writes a file that
:func:`load_model` would refuse.

Versioning
----------
``format_version`` is 1. A reader refuses files of a newer version with a message to
upgrade; a change that old readers could misread gets a new version.

Writing
-------
Files are written atomically (a temporary ``.NAME.PID.XXXX.tmp`` in the target
directory, fsync, then :func:`os.replace`), so a reader sees the old file or the new
one, never half of one. A write that was killed leaves its temporary behind: the next
write to the same target removes those whose process is gone. Errors about a target
that cannot be written (missing directory, a directory, no permission) name the
target, never the temporary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import EmkitError, InputError, ModelFileError
from emkit.inference.em import EMTrace

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SAVABLE",
    "SCHEMAS",
    "Field",
    "Schema",
    "atomic_write",
    "check_writable",
    "load_model",
    "save_model",
]

FORMAT = "emkit-model"
FORMAT_VERSION = 1
METADATA_KEY = "metadata.json"

# NamedTuples of arrays stored as "tuple" attributes, by the dotted name in the file.
_TUPLE_TYPES: dict[str, type[tuple[Any, ...]]] = {"emkit.inference.em.EMTrace": EMTrace}
_ARRAY_KINDS = "biufcU"  # bool, ints, floats, complex, unicode: all load without pickle
_JSON_SCALARS = (bool, int, float, str, type(None))
# A temporary left by a write that is not this process's and has no live process is
# stale; one whose name gives no process id is stale after this many seconds.
_STALE_SECONDS = 3600.0

StrPath = str | os.PathLike[str]


# -- schemas: what each estimator's file holds, as data ----------------------------------


@dataclasses.dataclass(frozen=True)
class Field:
    """One stored attribute of an estimator's file.

    Parameters
    ----------
    kind : {'array', 'int', 'float', 'bool', 'trace', 'family', 'mixture', 'categories'}
        ``'trace'`` is an :class:`~emkit.inference.em.EMTrace` whose arrays have length
        ``T``; ``'family'`` a bound family of :mod:`emkit.families` over ``d`` columns;
        ``'mixture'`` its :class:`~emkit.models.MixtureParams` (weights and component
        parameters, checked against the family); ``'categories'`` a dict of column name
        -> list of distinct category values.
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


_DENSE = ("full", "tied")
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
    },
    derived="family_attributes",
)

_FACTOR_MIXTURE = {
    "weights_": Field("array", ("K",), ("simplex",)),
    "means_": Field("array", ("K", "d"), ("finite",)),
    "components_": Field("array", ("K", "q", "d"), ("finite",)),
    "covariances_": Field("array", ("K", "d", "d"), ("spd",)),
}

SCHEMAS: dict[str, Schema] = {
    "GaussianMixture": Schema(
        dims={"K": "n_components"},
        fields={
            **_EM_FIELDS,
            "weights_": Field("array", ("K",), ("simplex",)),
            "means_": Field("array", ("K", "d"), ("finite",)),
            "covariances_": Field(
                "array", _COVARIANCE_SHAPES, _COVARIANCE_CHECKS, by="covariance_type"
            ),
            "precisions_": Field(
                "array", _COVARIANCE_SHAPES, _COVARIANCE_CHECKS, by="covariance_type"
            ),
            "precisions_cholesky_": Field(
                "array", _COVARIANCE_SHAPES, _FACTOR_CHECKS, by="covariance_type"
            ),
        },
        relations=(
            ("precisions_of_factor", "precisions_cholesky_", "precisions_"),
            ("covariances_of_factor", "precisions_cholesky_", "covariances_"),
        ),
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
}

# The estimators save_model stores.
SAVABLE = tuple(sorted(SCHEMAS))

# Value checks of the component parameters a MixtureModel file holds, by parameter
# tuple and field (their shapes come from the family: those of its default_params).
_COMPONENT_CHECKS: dict[str, Any] = {
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


def _precisions_of_factor(factor: Any, precisions: Any, dense: bool) -> str | None:
    expected = _precisions(factor, dense)
    scale = float(np.max(np.abs(expected), initial=0.0))
    rtol = _rtol(factor, precisions)
    if not np.allclose(precisions, expected, rtol=rtol, atol=rtol * 1e-2 * scale):
        return "must equal U U^T for U = precisions_cholesky_ (the precisions it comes from)"
    return None


def _covariances_of_factor(factor: Any, covariances: Any, dense: bool) -> str | None:
    # cov = (U U^T)^-1  <=>  U^T cov U = I, up to round-off that grows with cond(cov),
    # bounded by ||cov||_F ||U U^T||_F (cheaper than the SVD that cond() takes)
    eps = max(float(np.finfo(a.dtype).eps) for a in (factor, covariances))
    if dense:
        product = np.swapaxes(factor, -1, -2) @ covariances @ factor
        error = np.abs(product - np.eye(factor.shape[-1])).max(axis=(-2, -1))
        precisions = _precisions(factor, dense)
        cond = np.linalg.norm(covariances, axis=(-2, -1)) * np.linalg.norm(
            precisions, axis=(-2, -1)
        )
    else:
        error, cond = np.abs(covariances * factor**2 - 1.0), np.ones(np.shape(covariances))
    if np.any(error > np.maximum(1e-6, 1e2 * eps * cond)):
        return "must be the inverse of the precisions (U U^T)^-1 for U = precisions_cholesky_"
    return None


def _factor_covariances(components: Any, covariances: Any, dense: bool, noise: Any) -> str | None:
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


# Relations between a stored attribute and one derived from it.
RELATIONS: dict[str, Callable[..., str | None]] = {
    "precisions_of_factor": _precisions_of_factor,
    "covariances_of_factor": _covariances_of_factor,
    "factor_covariances": _factor_covariances,
}


# -- the tagged value encoding -----------------------------------------------------------


def _object_types() -> dict[str, type]:
    """The classes a model file may rebuild, by their public dotted names."""
    import emkit.families
    import emkit.models

    allowed: dict[str, type] = {}
    for module, names in (
        (emkit.families, emkit.families.__all__),
        (emkit.models, ("MixtureParams",)),
    ):
        for name in names:
            obj = getattr(module, name)
            rebuildable = isinstance(obj, type) and (
                dataclasses.is_dataclass(obj)
                or hasattr(obj, "_fields")
                or issubclass(obj, emkit.families.CovarianceStructure)
            )
            if rebuildable and obj is not emkit.families.Natural:
                allowed[f"{module.__name__}.{name}"] = obj
    return allowed


class _Encoder:
    """Turns parameters and attributes into JSON plus arrays for the archive."""

    def __init__(self) -> None:
        self.arrays: dict[str, NDArray[Any]] = {}
        self.names = {cls: name for name, cls in _object_types().items()}

    def array(self, key: str, value: NDArray[Any], what: str) -> dict[str, Any]:
        self.arrays[key] = _storable_array(what, value)
        return {"array": key, **({"dtype": "object"} if value.dtype.kind == "O" else {})}

    def value(self, value: Any, key: str, what: str) -> Any:
        """``value`` in the tagged encoding; arrays go to the archive under ``key``."""
        if isinstance(value, np.random.Generator | np.random.RandomState):
            return None  # a generator's state is not part of the model
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            return float(value) if math.isfinite(value) else {"float": repr(float(value))}
        if isinstance(value, str) or value is None:
            return str(value) if value is not None else None
        if isinstance(value, np.ndarray):
            return self.array(key, value, what)
        if isinstance(value, list):
            return [self.value(v, f"{key}.{i}", f"{what}[{i}]") for i, v in enumerate(value)]
        cls = type(value)
        if cls in self.names and hasattr(value, "_fields"):
            return {
                "namedtuple": self.names[cls],
                "fields": {
                    f: self.value(v, f"{key}.{f}", f"{what}.{f}")
                    for f, v in zip(value._fields, value, strict=True)
                },
            }
        if isinstance(value, tuple):
            return {
                "tuple": [self.value(v, f"{key}.{i}", f"{what}[{i}]") for i, v in enumerate(value)]
            }
        if isinstance(value, Mapping):
            items = []
            for i, (k, v) in enumerate(value.items()):
                if not isinstance(k, str | int | np.integer) or isinstance(k, bool | np.bool_):
                    raise TypeError(f"{what} has a key {k!r}")
                items.append(
                    [self.value(k, "", what), self.value(v, f"{key}.{i}", f"{what}[{k!r}]")]
                )
            return {"dict": items}
        if cls in self.names:
            if dataclasses.is_dataclass(value):
                # known parameters are re-applied from the estimator's `fixed` on load
                fields = {
                    f.name: self.value(
                        getattr(value, f.name), f"{key}.{f.name}", f"{what}.{f.name}"
                    )
                    for f in dataclasses.fields(value)
                    if f.name != "fixed"
                }
            elif not vars(value):
                fields = {}
            else:
                raise TypeError(f"{what} is a {cls.__name__} with state")
            return {"object": self.names[cls], "fields": fields}
        raise TypeError(f"{what} is a {cls.__module__}.{cls.__qualname__}")


class _Decoder:
    """Rebuilds values from the tagged encoding; problems raise :class:`ModelFileError`."""

    def __init__(self, data: Any, where: str) -> None:
        self.data = data
        self.where = where
        self.types = _object_types()

    def damaged(self, message: str) -> ModelFileError:
        return ModelFileError(f"Model file {self.where!r} is damaged: {message}")

    def array(self, key: Any, what: str, object_dtype: bool = False) -> NDArray[Any]:
        if not isinstance(key, str) or key not in self.data.files:
            raise self.damaged(f"the array {key!r} for {what} is missing.")
        array = np.asarray(self.data[key])
        return array.astype(object) if object_dtype else array

    def value(self, raw: Any, what: str) -> Any:
        if isinstance(raw, list):
            return [self.value(v, f"{what}[{i}]") for i, v in enumerate(raw)]
        if not isinstance(raw, dict):
            if not isinstance(raw, _JSON_SCALARS):
                raise ValueError(f"unexpected value {raw!r}")
            return raw
        tags = [t for t in ("float", "array", "tuple", "dict", "object", "namedtuple") if t in raw]
        tag = tags[0] if len(tags) == 1 else None
        if tag == "float" and len(raw) == 1:
            return _decode_float(raw["float"])
        if tag == "array" and set(raw) <= {"array", "dtype"}:
            return self.array(raw["array"], what, raw.get("dtype") == "object")
        if tag == "tuple" and len(raw) == 1 and isinstance(raw["tuple"], list):
            return tuple(self.value(v, f"{what}[{i}]") for i, v in enumerate(raw["tuple"]))
        if tag == "dict" and len(raw) == 1 and isinstance(raw["dict"], list):
            out = {}
            for item in raw["dict"]:
                if not (isinstance(item, list) and len(item) == 2):
                    raise self.damaged(f"{what} has an unreadable dict entry {item!r}.")
                key = item[0]
                if isinstance(key, bool) or not isinstance(key, str | int):
                    raise self.damaged(f"{what} has a key {key!r}; keys are strings or integers.")
                out[key] = self.value(item[1], f"{what}[{key!r}]")
            return out
        if tag in ("object", "namedtuple") and set(raw) == {tag, "fields"}:
            return self.rebuild(raw[tag], raw["fields"], what, tag)
        raise ValueError(f"unexpected object {raw!r}")

    def rebuild(self, name: Any, fields: Any, what: str, tag: str) -> Any:
        cls = self.types.get(name) if isinstance(name, str) else None
        if cls is None or (tag == "namedtuple") != hasattr(cls, "_fields"):
            raise ModelFileError(
                f"Model file {self.where!r} stores {what} as a {name!r}, which emkit does not "
                "rebuild; only emkit's families, priors, covariance structures and parameter "
                "tuples are."
            )
        if not isinstance(fields, dict):
            raise self.damaged(f"{what} has no fields.")
        values = {k: self.value(v, f"{what}.{k}") for k, v in fields.items()}
        if tag == "namedtuple":
            expected = set(cls._fields)  # type: ignore[attr-defined]
            required = expected - set(getattr(cls, "_field_defaults", {}))
            if not required <= set(values) <= expected:
                raise self.damaged(
                    f"{what} must have the fields {tuple(cls._fields)}, got {tuple(values)}."  # type: ignore[attr-defined]
                )
            return cls(**values)
        if not dataclasses.is_dataclass(cls):
            if values:
                raise self.damaged(f"{what} ({name}) takes no fields, got {tuple(values)}.")
            return cls()
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        if not set(values) <= names:
            raise self.damaged(
                f"{what} ({name}) has fields {sorted(set(values) - names)} that it does not take."
            )
        try:
            return cls(**values)
        except (InputError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"Model file {self.where!r}: {what} ({name}) is not valid: {exc}"
            ) from exc


def _encode_float(value: float) -> float | str:
    """JSON has no inf or nan: those are stored as the strings "inf", "-inf", "nan"."""
    return value if math.isfinite(value) else repr(value)


def _decode_float(value: Any) -> float:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a float: {value!r}")


def _storable_array(what: str, value: NDArray[Any]) -> NDArray[Any]:
    if value.dtype.kind == "O":
        if all(isinstance(v, str) for v in value.flat):
            return value.astype(str)
        raise InputError(
            f"The {what} is an object array that is not all strings; model files store "
            "numeric and string arrays only (never pickle)."
        )
    if value.dtype.kind not in _ARRAY_KINDS or value.dtype.names is not None:
        raise InputError(
            f"The {what} has dtype {value.dtype}, which a model file cannot store; model "
            "files store numeric and string arrays only."
        )
    return value


# -- atomic writes -------------------------------------------------------------------


@overload
def atomic_write(
    path: StrPath, *, text: Literal[False] = ...
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def atomic_write(
    path: StrPath, *, text: Literal[True]
) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_write(path: StrPath, *, text: bool) -> contextlib.AbstractContextManager[IO[Any]]: ...


def atomic_write(
    path: StrPath, *, text: bool = False
) -> contextlib.AbstractContextManager[IO[Any]]:
    """Open a temporary file that replaces ``path`` only if the ``with`` block succeeds.

    The temporary file (``.NAME.PID.XXXX.tmp``) lives in the directory of ``path`` (so
    :func:`os.replace` is atomic), is flushed and fsync'ed before the replace, and is
    removed on any error, leaving an existing ``path`` untouched. Temporaries of the same
    target left by killed writes (their process is gone) are removed first.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    text : bool, default=False
        Open in text mode (UTF-8, ``"\\n"`` line endings) instead of binary.

    Returns
    -------
    context manager yielding a writable file object

    Raises
    ------
    InputError
        If ``path`` cannot be written: its directory is missing or not writable, or it
        is a directory. The message names ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
    >>> with atomic_write(target, text=True) as fh:
    ...     _ = fh.write("label\\n0\\n")
    >>> target.read_text()
    'label\\n0\\n'
    """
    return _atomic_write(Path(path), text)


def check_writable(path: StrPath) -> Path:
    """Raise :class:`InputError` naming ``path`` if a file cannot be written there.

    For a command that writes its results after a long computation: it checks the
    directory exists, ``path`` is not a directory, and a file can be created beside
    it (a temporary that is removed at once), without touching ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file that will be written.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> check_writable(pathlib.Path(tempfile.mkdtemp()) / "model.npz").name
    'model.npz'
    """
    target = Path(path)
    _check_target(target)
    tmp = _open_temporary(target, text=False)
    tmp.close()
    with contextlib.suppress(OSError):
        os.unlink(tmp.name)
    return target


def _check_target(path: Path) -> None:
    directory = path.parent
    if not directory.is_dir():
        raise InputError(
            f"Cannot write {str(path)!r}: the directory {str(directory)!r} does not exist. "
            "Create it first or choose another path."
        )
    if path.is_dir():
        raise InputError(f"Cannot write {str(path)!r}: it is a directory; give a file name.")


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _open_temporary(path: Path, text: bool) -> IO[Any]:
    """A new temporary beside ``path``; an error names ``path``, not the temporary."""
    try:
        return tempfile.NamedTemporaryFile(
            mode="w" if text else "wb",
            delete=False,
            dir=path.parent,
            prefix=f"{_temporary_prefix(path)}{os.getpid()}.",
            suffix=".tmp",
            encoding="utf-8" if text else None,
            newline="" if text else None,
        )
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> InputError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "Choose a writable directory or change its permissions."
    else:
        fix = "Choose another path."
    return InputError(
        f"Cannot write {str(path)!r}: {reason} (in the directory {str(path.parent)!r}). {fix}"
    )


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` left by writes that were killed.

    A temporary is stale when the process named in it is gone (or, for a name without
    a process id, when it is older than an hour); a live writer's is kept.
    """
    prefix = _temporary_prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(?:(\d+)\.)?[^.]*\.tmp\Z")
    with contextlib.suppress(OSError):
        entries = list(os.scandir(path.parent))
        for entry in entries:
            match = pattern.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            pid = match.group(1)
            with contextlib.suppress(OSError):
                if pid is not None:
                    stale = int(pid) != os.getpid() and not _process_alive(int(pid))
                else:
                    stale = time.time() - entry.stat().st_mtime > _STALE_SECONDS
                if stale:
                    os.unlink(entry.path)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # it exists, as another user's (or the number is not a pid)
    except OSError:
        return True
    return True


@contextlib.contextmanager
def _atomic_write(path: Path, text: bool) -> Iterator[IO[Any]]:
    _check_target(path)
    _remove_stale_temporaries(path)
    mode = _target_mode(path)
    tmp = _open_temporary(path, text)
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.chmod(tmp.name, mode)  # mkstemp creates 0600; give the file the usual permissions
            os.replace(tmp.name, path)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(path.parent)


def _target_mode(path: Path) -> int:
    """Permissions for the new file: those of the file it replaces, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    umask = 0o022
    with contextlib.suppress(OSError, ValueError):
        # Linux reports the umask without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- validation: one validator for every schema ------------------------------------------


class _Invalid(Exception):
    """An entry that does not match its schema: (entry, what is wrong)."""

    def __init__(self, entry: str, problem: str) -> None:
        super().__init__(f"{entry} {problem}")
        self.entry = entry
        self.problem = problem


def _validate(name: str, params: Mapping[str, Any], attributes: Mapping[str, Any]) -> None:
    """Check fitted ``attributes`` (and the parameters that shape them) against the
    schema of estimator ``name``; raise :class:`_Invalid` at the first problem."""
    schema = SCHEMAS[name]
    dims: dict[str, int] = {}
    for dim, param in schema.dims.items():
        # "name?": None is allowed too, and the arrays then set the dimension
        param, optional = param.removesuffix("?"), param.endswith("?")
        value = params.get(param)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise _Invalid(f"the parameter {param}", f"must be an integer >= 1, got {value!r}")
        dims[dim] = int(value)
    for key in attributes:
        if key not in schema.fields:
            raise _Invalid(
                f"the attribute {key}",
                f"is not one a {name} has (expected: {', '.join(sorted(schema.fields))})",
            )
    for key, spec in schema.fields.items():
        if key not in attributes:
            if spec.optional:
                continue
            raise _Invalid(f"the attribute {key}", "is missing")
        _check_field(key, spec, attributes[key], params, dims)
    for relation, source, derived in schema.relations:
        structure = params.get("covariance_type", "full")
        extra = (attributes["noise_variance_"],) if relation == "factor_covariances" else ()
        problem = RELATIONS[relation](
            attributes[source], attributes[derived], structure in _DENSE, *extra
        )
        if problem is not None:
            raise _Invalid(f"the attribute {derived}", problem)


def _pick(value: Any, spec: Field, params: Mapping[str, Any]) -> Any:
    return value[params[spec.by]] if spec.by is not None else value


def _check_field(
    key: str, spec: Field, value: Any, params: Mapping[str, Any], dims: dict[str, int]
) -> None:
    entry = f"the attribute {key}"
    kind = spec.kind
    if kind in ("int", "float", "bool"):
        types = {"int": int | np.integer, "float": float | np.floating, "bool": bool | np.bool_}
        is_bool = isinstance(value, bool | np.bool_)
        if is_bool != (kind == "bool") or not isinstance(value, types[kind]):
            raise _Invalid(entry, f"must be {'an' if kind == 'int' else 'a'} {kind}, got {value!r}")
        if spec.dim is not None:
            _bind(dims, spec.dim, int(value), entry, key)
        _run_checks(entry, spec.checks, np.asarray(value, dtype=np.float64), {"dims": dims})
    elif kind == "array":
        _check_array(entry, value, _pick(spec.shape, spec, params), spec.dtype, dims)
        checks = _pick(spec.checks, spec, params)
        _run_checks(entry, checks, value, {"dims": dims})
    elif kind == "trace":
        if type(value) is not EMTrace:
            raise _Invalid(entry, f"must be an EMTrace, got {type(value).__name__}")
        for field, array in zip(value._fields, value, strict=True):
            _check_array(f"{entry}.{field}", array, ("T",), "f", dims)
    elif kind == "family":
        _check_family(entry, value, dims)
    elif kind == "mixture":
        _check_mixture(entry, value, dims)
    elif kind == "categories":
        _check_categories(entry, value)
    else:  # pragma: no cover - a schema bug
        raise AssertionError(kind)


def _bind(dims: dict[str, int], dim: str, size: int, entry: str, source: str) -> None:
    if size < 1 and dim == "d":
        raise _Invalid(entry, f"must be an integer >= 1, got {size}")
    if dim in dims and dims[dim] != size:
        raise _Invalid(entry, f"must be {dims[dim]} ({dim}), got {size}")
    dims[dim] = size


_DTYPES = {"f": ("f", "a float array"), "i": ("iu", "an integer array"), "U": ("UO", "text")}


def _check_array(
    entry: str, value: Any, shape: tuple[Any, ...], dtype: str, dims: dict[str, int]
) -> None:
    kinds, described = _DTYPES[dtype]
    if not isinstance(value, np.ndarray):
        raise _Invalid(entry, f"must be {described}, got a {type(value).__name__}")
    if value.dtype.kind not in kinds or (
        dtype == "U" and value.dtype.kind == "O" and not all(isinstance(v, str) for v in value.flat)
    ):
        raise _Invalid(entry, f"must be {described}, got dtype {value.dtype}")
    expected = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if value.ndim != len(shape):
        raise _Invalid(entry, f"must have shape {expected}, got shape {value.shape}")
    for axis, (size, want) in enumerate(zip(value.shape, shape, strict=True)):
        if isinstance(want, int):
            ok = size == want
        elif want in dims:
            ok = size == dims[want]
        else:
            dims[want], ok = size, True
        if not ok:
            sizes = tuple(s if isinstance(s, int) else dims.get(s, s) for s in shape)
            raise _Invalid(
                entry,
                f"must have shape {expected} = {sizes}, got shape {value.shape} (axis {axis})",
            )


def _run_checks(entry: str, checks: Any, value: Any, ctx: Mapping[str, Any]) -> None:
    for check in checks:
        problem = CHECKS[check](value, ctx)
        if problem is not None:
            raise _Invalid(entry, problem)


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
        raise _Invalid(entry, f"must be a family of emkit.families, got {type(family).__name__}")
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
            raise _Invalid(where, f"must be a family of emkit.families, got {type(part).__name__}")
        try:
            n = int(part.n_features)
        except (EmkitError, AttributeError, TypeError, ValueError, IndexError):
            raise _Invalid(where, "must be a family bound to the training data") from None
        if columns is not None:
            if not (
                isinstance(columns, tuple)
                and all(isinstance(c, int) and not isinstance(c, bool) for c in columns)
                and len(columns) == n
            ):
                raise _Invalid(where, f"must name its {n} columns by position, got {columns!r}")
            seen.extend(columns)
        _check_family_arrays(where, part)
    total = len(seen) if isinstance(family, Product) else n
    if isinstance(family, Product) and sorted(seen) != list(range(total)):
        raise _Invalid(entry, f"must cover the columns 0..{total - 1} once each, got {seen}")
    _bind(dims, "d", total, entry, "family_")


def _check_family_arrays(where: str, family: Any) -> None:
    """Every float array a bound family holds (shift, scales, tables, priors) is finite."""
    stack = [(where, family)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind == "f":
                _run_checks(path, ("finite",), obj, {})
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(
                (f"{path}.{f.name}", getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if f.name != "fixed"
            )
        elif isinstance(obj, tuple | list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(obj))
        elif isinstance(obj, float) and not math.isfinite(obj):
            raise _Invalid(path, f"must be finite, got {obj!r}")


def _check_mixture(entry: str, params: Any, dims: dict[str, int]) -> None:
    from emkit.models import MixtureParams

    if type(params) is not MixtureParams:
        raise _Invalid(entry, f"must be MixtureParams, got {type(params).__name__}")
    _check_array(f"{entry}.weights", params.weights, ("K",), "f", dims)
    _run_checks(f"{entry}.weights", ("simplex",), params.weights, {})


def _check_components(entry: str, family: Any, components: Any, n_components: int) -> None:
    """The component parameters have the types and shapes of the family's own
    ``default_params`` and pass the value checks of :data:`_COMPONENT_CHECKS`."""
    from emkit.families import LogNormalFamily, Product

    if isinstance(family, Product):
        blocks = list(family.blocks.items())
        if not isinstance(components, tuple) or len(components) != len(blocks):
            raise _Invalid(entry, f"must be a tuple of {len(blocks)} blocks' parameters")
        for (name, (_, part)), comp in zip(blocks, components, strict=True):
            _check_components(f"{entry}[{name!r}]", part, comp, n_components)
        return
    expected = family.default_params(n_components)
    if type(components) is not type(expected):
        raise _Invalid(entry, f"must be {type(expected).__name__}, got {type(components).__name__}")
    gaussian = family.gaussian if isinstance(family, LogNormalFamily) else family
    ctx: dict[str, Any] = {"dims": {}}
    if hasattr(family, "_offsets") and not isinstance(family, Product):
        with contextlib.suppress(Exception):
            ctx["offsets"] = np.asarray(family._offsets())
    layout = (
        "dense" if getattr(getattr(gaussian, "structure", None), "dense", False) else "variances"
    )
    for field, value, like in zip(expected._fields, components, expected, strict=True):
        where = f"{entry}.{field}"
        checks = _COMPONENT_CHECKS.get(f"{type(expected).__name__}.{field}", ("finite",))
        if isinstance(checks, dict):
            checks = checks[layout]
        if isinstance(like, np.ndarray):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise _Invalid(where, f"must be a float array, got {type(value).__name__}")
            if value.shape != like.shape:
                raise _Invalid(where, f"must have shape {like.shape}, got shape {value.shape}")
        _run_checks(where, checks, value, ctx)
    if type(expected).__name__ == "GaussianParams":
        problem = _covariances_of_factor(
            components.precisions_cholesky, components.covariances, layout == "dense"
        )
        if problem is not None:
            raise _Invalid(f"{entry}.covariances", problem)


def _check_categories(entry: str, categories: Any) -> None:
    if not isinstance(categories, dict):
        raise _Invalid(entry, f"must be a dict of column -> categories, got {categories!r}")
    for column, values in categories.items():
        if not isinstance(column, str) or not isinstance(values, list) or not values:
            raise _Invalid(
                f"{entry}[{column!r}]", f"must be a non-empty list of categories, got {values!r}"
            )
        if len(set(values)) != len(values):
            raise _Invalid(f"{entry}[{column!r}]", f"must be distinct categories, got {values!r}")


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
    categories = attributes.get("categories_")
    if categories:
        names = [] if feature_names is None else list(feature_names)
        for column in categories:
            if column not in names:
                raise _Invalid(
                    f"the attribute categories_[{column!r}]",
                    f"must name a column of feature_names_in_ ({names})",
                )


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


_DERIVE: dict[str, Callable[[Any], None]] = {"family_attributes": _family_attributes}


def _derived_names(estimator: Any) -> set[str]:
    """The attributes a schema's ``derived`` step sets (not stored)."""
    if SCHEMAS[type(estimator).__name__].derived is None:
        return set()
    names = {"weights_", "component_params_"}
    family = getattr(estimator, "family_", None)
    params = getattr(estimator, "params_", None)
    if family is not None and params is not None and type(family).__name__ != "Product":
        names |= {f"{n}_" for n in family.fitted_attributes(params.components)}
    return names


def _validate_all(name: str, params: Mapping[str, Any], attributes: Mapping[str, Any]) -> None:
    _validate(name, params, attributes)
    if SCHEMAS[name].derived == "family_attributes":
        _check_mixture_model(
            attributes, int(params["n_components"]), attributes.get("feature_names_in_")
        )


# -- saving --------------------------------------------------------------------------


def save_model(estimator: Any, path: StrPath) -> Path:
    """Write a fitted estimator to one ``.npz`` model file, atomically and without pickle.

    The estimator is checked against the same schema :func:`load_model` checks, so a
    file written here always loads.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator of a class exported by :mod:`emkit.estimators`.
    path : str or os.PathLike
        The file to write, used as given (``.npz`` is not appended). An existing file is
        replaced only once the new one is completely written.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    InputError
        If the estimator is not fitted, not one of emkit's estimators, holds a value a
        model file cannot store or that its schema refuses, or ``path`` cannot be
        written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from emkit import GaussianMixture
    >>> X = np.array([[0.0, 0.1], [0.2, 0.0], [5.0, 5.1], [5.2, 5.0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
    >>> loaded = load_model(save_model(gm, target))
    >>> bool((loaded.predict(X) == gm.predict(X)).all())
    True
    """
    import emkit
    import emkit.estimators

    name = type(estimator).__name__
    if getattr(emkit.estimators, name, None) is not type(estimator) or name not in SCHEMAS:
        raise InputError(
            f"save_model stores emkit's estimators ({', '.join(SAVABLE)}), got "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}."
        )
    schema = SCHEMAS[name]
    fitted = _fitted_attributes(estimator)
    if not fitted:
        raise InputError(
            f"This {name} is not fitted yet: it has no fitted attributes to save. Call "
            "fit(X) before save_model."
        )
    derived = _derived_names(estimator)
    stored = {k: v for k, v in fitted.items() if k not in derived}
    stored.update(
        {
            k: getattr(estimator, k)
            for k in schema.fields
            if k.startswith("_") and hasattr(estimator, k)
        }
    )
    encoder = _Encoder()
    params = {
        key: _encode_param(encoder, key, value) for key, value in estimator.get_params().items()
    }
    attributes = {key: _encode_attribute(encoder, key, value) for key, value in stored.items()}
    try:
        _validate_all(name, estimator.get_params(), stored)
    except _Invalid as bad:
        raise InputError(
            f"Cannot save this {name}: {bad.entry} {bad.problem}. A model file stores a "
            "fitted model as fit() leaves it; refit before saving."
        ) from None
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "emkit_version": emkit.__version__,
        "estimator": name,
        "params": params,
        "attributes": attributes,
    }
    arrays = encoder.arrays
    arrays[METADATA_KEY] = np.array(json.dumps(metadata, allow_nan=False, sort_keys=True))
    target = Path(path)
    # through a file object, so np.savez does not append ".npz" to the temporary name
    with atomic_write(target) as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    return target


def _fitted_attributes(estimator: Any) -> dict[str, Any]:
    """The scikit-learn convention: public names ending in exactly one underscore."""
    return {
        key: value
        for key, value in sorted(vars(estimator).items())
        if key.endswith("_") and not key.endswith("__") and not key.startswith("_")
    }


def _encode_param(encoder: _Encoder, key: str, value: Any) -> Any:
    try:
        return encoder.value(value, f"param.{key}", f"parameter {key}")
    except TypeError:
        raise InputError(
            f"The parameter {key}={value!r} cannot be stored in a model file (it holds a "
            f"{type(value).__name__}); model files store numbers, strings, booleans, None, "
            "lists, tuples, dicts, arrays and emkit's families and priors. Set it to one of "
            "those before saving."
        ) from None


def _encode_array(encoder: _Encoder, key: str, value: NDArray[Any], what: str) -> dict[str, Any]:
    encoder.array(key, value, what)
    return {
        "kind": "array",
        "key": key,
        "dtype": "object" if value.dtype.kind == "O" else value.dtype.str,
    }


def _encode_attribute(encoder: _Encoder, name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        return _encode_array(encoder, f"attr.{name}", value, f"attribute {name}")
    if isinstance(value, bool | np.bool_):
        return {"kind": "scalar", "type": "bool", "value": bool(value)}
    if isinstance(value, int | np.integer):
        return {"kind": "scalar", "type": "int", "value": int(value)}
    if isinstance(value, float | np.floating):
        return {"kind": "scalar", "type": "float", "value": _encode_float(float(value))}
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, tuple) and _TUPLE_TYPES.get(type_name) is type(value):
        fields: dict[str, Any] = {}
        for field, item in zip(value._fields, value, strict=True):  # type: ignore[attr-defined]
            if not isinstance(item, np.ndarray):
                raise InputError(
                    f"The attribute {name}.{field} is a {type(item).__name__}; model files "
                    "store NamedTuples of arrays only."
                )
            fields[field] = _encode_array(
                encoder, f"attr.{name}.{field}", item, f"attribute {name}.{field}"
            )
        return {"kind": "tuple", "type": type_name, "fields": fields}
    try:
        return {"kind": "value", "value": encoder.value(value, f"attr.{name}", name)}
    except TypeError as exc:
        raise InputError(
            f"The fitted attribute {name} is a {type_name}, which a model file cannot store "
            f"({exc}); model files store arrays, numbers, booleans, lists, dicts and emkit's "
            "families, priors and parameter tuples."
        ) from None


# -- loading -------------------------------------------------------------------------


def load_model(path: StrPath) -> Any:
    """Read an estimator written by :func:`save_model` (``allow_pickle=False``), validated.

    The file is checked against its estimator's schema (:data:`SCHEMAS`) before the
    estimator is built: shapes, dtypes, finiteness, positive-definite covariances and
    upper-triangular precision factors, weights on the simplex, integer
    hyper-parameters, no missing or extra attribute.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    estimator
        A fitted estimator of the class named in the file, with its parameters and every
        fitted attribute restored.

    Raises
    ------
    ModelFileError
        If the file is missing, not an ``.npz`` archive (or a truncated one), not an emkit
        model, of a newer format version, names an estimator emkit does not know, or
        holds an entry its schema refuses; the message names the file and the entry.
    """
    import emkit.estimators

    p = Path(path)
    where = str(p)
    if not p.exists():
        raise ModelFileError(f"Model file {where!r} does not exist. Check the path.")
    if p.is_dir():
        raise ModelFileError(f"Model file {where!r} is a directory, not a model file.")
    if not zipfile.is_zipfile(p):
        raise ModelFileError(
            f"{where!r} is not an emkit model file: it is not a NumPy .npz archive. Model "
            "files are written by emkit.save_model or `emkit fit`."
        )
    try:
        # our own handle: np.load leaks its own when the archive is damaged
        with p.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
            metadata = _read_metadata(data, where)
            decoder = _Decoder(data, where)
            name = metadata["estimator"]
            cls = getattr(emkit.estimators, name)
            params = _decode_params(metadata["params"], decoder, cls)
            attributes = {
                attr: _decode_attribute(attr, spec, decoder, SCHEMAS[name])
                for attr, spec in metadata["attributes"].items()
            }
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"Model file {where!r} is damaged and cannot be read: {exc}") from exc
    try:
        _validate_all(name, params, attributes)
    except _Invalid as bad:
        raise ModelFileError(
            f"Model file {where!r} is not a valid {name}: {bad.entry} {bad.problem}. The file "
            "was changed or damaged after it was written; save the model again."
        ) from None
    try:
        estimator = cls(**params)
        check = getattr(estimator, "_check_parameters", None)
        if check is not None:
            check()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"Model file {where!r} has parameters this emkit's {cls.__name__} does not accept "
            f"({exc}). It may come from another emkit version."
        ) from exc
    for attr, value in attributes.items():
        setattr(estimator, attr, value)
    derive = SCHEMAS[name].derived
    if derive is not None:
        try:
            _DERIVE[derive](estimator)
        except (InputError, ValueError, TypeError) as exc:
            raise ModelFileError(
                f"Model file {where!r} is not a valid {name}: its parameters do not fit its "
                f"family ({exc})."
            ) from exc
    return estimator


def _read_metadata(data: Any, where: str) -> dict[str, Any]:
    if METADATA_KEY not in data.files:
        raise ModelFileError(
            f"{where!r} is a NumPy .npz archive but not an emkit model file: it has no "
            f"{METADATA_KEY!r} entry. Model files are written by emkit.save_model."
        )
    raw = data[METADATA_KEY]
    if raw.shape != () or raw.dtype.kind != "U":
        raise ModelFileError(f"Model file {where!r} is damaged: {METADATA_KEY} is not text.")
    try:
        metadata = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"Model file {where!r} is damaged: {METADATA_KEY} is not valid JSON ({exc})."
        ) from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ModelFileError(
            f"{where!r} is not an emkit model file: its format is {found!r}, expected {FORMAT!r}."
        )
    version = metadata.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"Model file {where!r} is damaged: format_version is {version!r}, expected a "
            "positive integer."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"Model file {where!r} has format_version {version} (written by emkit "
            f"{metadata.get('emkit_version', '?')}); this emkit reads format_version "
            f"{FORMAT_VERSION} and older. Upgrade emkit to load it."
        )
    name = metadata.get("estimator")
    if not isinstance(name, str) or name not in SCHEMAS:
        raise ModelFileError(
            f"Model file {where!r} holds an estimator {name!r} that this emkit does not know; "
            f"known estimators: {', '.join(SAVABLE)}. Upgrade emkit to load it."
        )
    for key in ("params", "attributes"):
        if not isinstance(metadata.get(key), dict):
            raise ModelFileError(f"Model file {where!r} is damaged: its metadata has no {key!r}.")
    return metadata


def _decode_params(raw: dict[str, Any], decoder: _Decoder, cls: type) -> dict[str, Any]:
    known = cls().get_params()
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ModelFileError(
                f"Model file {decoder.where!r} sets a parameter {key!r} that this emkit's "
                f"{cls.__name__} does not have. It may come from a newer emkit; upgrade emkit."
            )
        params[key] = decoder.value(value, f"parameter {key}")
    return params


def _decode_attribute(name: Any, spec: Any, decoder: _Decoder, schema: Schema) -> Any:
    where = decoder.where
    if (
        not (
            isinstance(name, str)
            and name.isidentifier()
            and name.endswith("_")
            and not name.endswith("__")
            and not name.startswith("_")
        )
        and name not in schema.fields
    ):
        raise ModelFileError(
            f"Model file {where!r} is damaged: {name!r} is not a fitted attribute name."
        )
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "array":
        return decoder.array(spec.get("key"), f"attribute {name}", spec.get("dtype") == "object")
    if kind == "scalar":
        kind_of = spec.get("type")
        value = spec.get("value")
        if kind_of == "bool" and isinstance(value, bool):
            return value
        if kind_of == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind_of == "float":
            return _decode_float(value)
    if kind == "value" and set(spec) == {"kind", "value"}:
        return decoder.value(spec["value"], f"attribute {name}")
    if kind == "tuple":
        type_name = spec.get("type")
        tuple_type = _TUPLE_TYPES.get(type_name) if isinstance(type_name, str) else None
        if tuple_type is None:
            raise ModelFileError(
                f"Model file {where!r} stores {name} as a {type_name!r}, which emkit does not "
                f"rebuild; allowed: {', '.join(sorted(_TUPLE_TYPES))}."
            )
        fields = spec.get("fields")
        expected: tuple[str, ...] = tuple_type._fields  # type: ignore[attr-defined]
        if not isinstance(fields, dict) or set(fields) != set(expected):
            raise ModelFileError(
                f"Model file {where!r} is damaged: {name} must have the fields {expected}."
            )
        return tuple_type(
            *(_decode_array(fields[f], decoder, f"attribute {name}.{f}") for f in expected)
        )
    raise ModelFileError(
        f"Model file {where!r} is damaged: the attribute {name} has an unreadable entry {spec!r}."
    )


def _decode_array(spec: Any, decoder: _Decoder, what: str) -> NDArray[Any]:
    if not isinstance(spec, dict):
        raise ModelFileError(f"Model file {decoder.where!r} is damaged: {what} has no array entry.")
    return decoder.array(spec.get("key"), what, spec.get("dtype") == "object")
