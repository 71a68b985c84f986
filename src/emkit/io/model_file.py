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
same free parameters. A variational fit (``e_step='variational'``) adds its posteriors:
``posteriors_`` (``{"kind": "posterior"}``: the prior objects with the state their
conjugate update keeps, ``_excess``..., so they continue exactly),
``weight_concentration_`` and ``weight_concentration_prior_``.

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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError, ModelFileError
from emkit.inference.em import EMTrace
from emkit.io._schema import (
    DERIVE,
    SAVABLE,
    SCHEMAS,
    Field,
    Invalid,
    Schema,
    check_dims,
    derived_names,
    validate,
)

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
# The state a variational fit's posterior holds beyond its constructor's arguments
# (emkit.families.priors._build): kept so a loaded posterior continues exactly.
_POSTERIOR_STATE = ("_excess", "_excess_a", "_excess_b", "_offsets")
# A temporary left by a write that is not this process's and has no live process is
# stale; one whose name gives no process id is stale after this many seconds.
_STALE_SECONDS = 3600.0

StrPath = str | os.PathLike[str]


# -- the tagged value encoding -----------------------------------------------------------


def _object_types() -> dict[str, type]:
    """The classes a model file may rebuild, by their public dotted names."""
    import emkit.families
    import emkit.inference
    import emkit.models

    allowed: dict[str, type] = {}
    for module, names in (
        (emkit.families, emkit.families.__all__),
        (emkit.models, ("MixtureParams",)),
        (emkit.inference, ("MonteCarlo",)),  # an e_step value
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
        self.posterior = False  # encoding posteriors_: keep their stored state too

    def posteriors(self, value: Any, key: str, what: str) -> Any:
        """A variational fit's posteriors, with the state their updates keep exact."""
        self.posterior = True
        try:
            return self.value(value, key, what)
        finally:
            self.posterior = False

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
                if self.posterior:
                    fields.update(
                        {
                            k: self.value(v, f"{key}.{k}", f"{what}.{k}")
                            for k, v in vars(value).items()
                            if k in _POSTERIOR_STATE and v is not None
                        }
                    )
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
        self.posterior = False  # decoding posteriors_: priors built from stored state

    def posteriors(self, raw: Any, what: str) -> Any:
        self.posterior = True
        try:
            return self.value(raw, what)
        finally:
            self.posterior = False

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
        if self.posterior and cls.__module__ == "emkit.families.priors":
            return self.posterior_object(cls, name, values, what, names)
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

    def posterior_object(
        self, cls: type, name: str, values: dict[str, Any], what: str, names: set[str]
    ) -> Any:
        """A posterior holds (K, ...) arrays its constructor refuses: it is built from its
        stored fields as the conjugate update builds it, then checked against the schema
        (:func:`emkit.io._schema.validate`) before any use."""
        from emkit.families.priors import _build

        allowed = names | set(_POSTERIOR_STATE)
        if not names <= set(values) <= allowed:
            raise self.damaged(
                f"{what} ({name}) must have the fields {sorted(names)} (and its stored "
                f"state {list(_POSTERIOR_STATE)}), got {sorted(values)}."
            )
        return _build(cls, **values)


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
    derived = derived_names(estimator)
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
        validate(name, estimator.get_params(), stored)
    except Invalid as bad:
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
    if name == "posteriors_":
        try:
            return {"kind": "posterior", "value": encoder.posteriors(value, f"attr.{name}", name)}
        except TypeError as exc:
            raise InputError(
                f"The fitted attribute {name} is a {type_name}, which a model file cannot "
                f"store ({exc}); it holds emkit's posterior objects (GammaPrior, BetaPrior, "
                "DirichletPrior) or a dict of them."
            ) from None
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
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RecursionError,
        zipfile.BadZipFile,
        EOFError,
    ) as exc:
        raise ModelFileError(f"Model file {where!r} is damaged and cannot be read: {exc}") from exc

    def invalid(bad: Invalid) -> ModelFileError:
        return ModelFileError(
            f"Model file {where!r} is not a valid {name}: {bad.entry} {bad.problem}. The file "
            "was changed or damaged after it was written; save the model again."
        )

    try:
        check_dims(name, params)
    except Invalid as bad:
        raise invalid(bad) from None
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
    try:
        validate(name, params, attributes)
    except Invalid as bad:
        raise invalid(bad) from None
    for attr, value in attributes.items():
        setattr(estimator, attr, value)
    derive = SCHEMAS[name].derived
    if derive is not None:
        try:
            DERIVE[derive](estimator)
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
    if kind == "posterior" and name == "posteriors_" and set(spec) == {"kind", "value"}:
        return decoder.posteriors(spec["value"], f"attribute {name}")
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
        # fields with a default may be absent (files written before they were added)
        optional = set(tuple_type._field_defaults)  # type: ignore[attr-defined]
        if not isinstance(fields, dict) or not set(expected) - optional <= set(fields) <= set(
            expected
        ):
            raise ModelFileError(
                f"Model file {where!r} is damaged: {name} must have the fields {expected}."
            )
        return tuple_type(
            **{
                f: _decode_array(fields[f], decoder, f"attribute {name}.{f}")
                for f in expected
                if f in fields
            }
        )
    raise ModelFileError(
        f"Model file {where!r} is damaged: the attribute {name} has an unreadable entry {spec!r}."
    )


def _decode_array(spec: Any, decoder: _Decoder, what: str) -> NDArray[Any]:
    if not isinstance(spec, dict):
        raise ModelFileError(f"Model file {decoder.where!r} is damaged: {what} has no array entry.")
    return decoder.array(spec.get("key"), what, spec.get("dtype") == "object")
